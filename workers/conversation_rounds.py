"""Answer a batch's conversation turns in order, each with the history before it.

A batch may hold several turns of one session (submitted back to back), and a turn's
predecessor may still be running on another worker. The batch is therefore answered in
rounds: the first round holds every request outside a session and each session's next turn
whose predecessor has landed; the next round runs once those have landed too, and so on.
A turn whose predecessor does not land within ``order_wait_s`` (its message was lost or is
waiting for redelivery) runs anyway with the history as it stands, and is logged. A turn
whose session's stored state cannot be read is not run: it is reported as ``unreadable``
(the batch fails it alone), and the rest of the batch goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from batchgate.sessions import SessionStore, SessionTurn, fit_history, lowest_turns, ready_turns
from batching.types import InferenceRequest

log = logging.getLogger(__name__)

#: How often a waiting turn re-reads whether its predecessor has landed.
POLL_S = 0.02


@dataclass(frozen=True)
class Round:
    """Requests to answer now, and turns that cannot run because their session is unreadable."""

    requests: list[InferenceRequest]
    unreadable: list[InferenceRequest] = field(default_factory=list)


class ConversationRounds:
    """Splits a batch into ordered rounds and gives each turn its history."""

    def __init__(
        self,
        sessions: SessionStore,
        history_tokens: int,
        order_wait_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sessions = sessions
        self._history_tokens = history_tokens
        self._order_wait_s = order_wait_s
        self._clock = clock
        self._sleep = sleep

    def rounds(
        self, requests: Sequence[InferenceRequest], turns: Sequence[SessionTurn | None]
    ) -> Iterator[Round]:
        """Yield the requests round by round; the caller lands each round before asking for
        the next (the generator reads what has landed when it resumes)."""
        pending = list(zip(requests, turns, strict=True))
        if not any(turns):
            yield Round(list(requests))
            return
        waiting_since: float | None = None
        while pending:
            refs = sorted({t.ref for _, t in pending if t is not None})
            landed, unreadable = self.sessions.applied(refs)
            if unreadable:
                broken = [p for p in pending if p[1] is not None and p[1].ref in unreadable]
                pending = [p for p in pending if p[1] is None or p[1].ref not in unreadable]
                yield Round([], [request for request, _ in broken])
                continue
            ready = ready_turns([t for _, t in pending], landed)
            if not ready:
                now = self._clock()
                waiting_since = now if waiting_since is None else waiting_since
                if now - waiting_since < self._order_wait_s:
                    self._sleep(POLL_S)
                    continue
                ready = lowest_turns([t for _, t in pending])
                log.warning(
                    "answering %d conversation turn(s) whose predecessor did not land within %.0f s",
                    len(ready),
                    self._order_wait_s,
                )
            waiting_since = None
            chosen = [pending[i] for i in ready]
            taken = set(ready)
            pending = [p for i, p in enumerate(pending) if i not in taken]
            yield self._with_history(chosen)

    def _with_history(self, chosen: list[tuple[InferenceRequest, SessionTurn | None]]) -> Round:
        refs = sorted({t.ref for _, t in chosen if t is not None})
        histories, unreadable = self.sessions.histories(refs) if refs else ({}, set())
        answered: list[InferenceRequest] = []
        broken: list[InferenceRequest] = []
        for request, turn in chosen:
            if turn is not None and turn.ref in unreadable:
                broken.append(request)
                continue
            if turn is not None:
                kept = fit_history(histories.get(turn.ref, []), self._history_tokens)
                request = dataclasses.replace(request, history=tuple((t.role, t.contents) for t in kept))
            answered.append(request)
        return Round(answered, broken)
