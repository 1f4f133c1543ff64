"""Counters behind ``GET /_sim/stats``: what the simulator did, for tests and benchmarks."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Stats:
    """Totals since start or the last ``POST /_sim/reset``."""

    #: generateContent calls answered successfully.
    calls: int = 0
    #: Prompts answered: packed items answered plus plain calls.
    items: int = 0
    #: Injected errors: random faults, 429 quota refusals and poison 500s.
    errors: int = 0
    #: Packed items left out of an answer (at random or poisoned).
    dropped_items: int = 0
    #: Calls holding a slot now, and the most ever at once.
    in_flight: int = 0
    max_in_flight: int = 0
    #: Calls waiting for a slot now.
    waiting: int = 0
    #: Time calls spent waiting for a slot, and holding one.
    slot_wait_ms_total: float = 0.0
    busy_ms_total: float = 0.0
    #: Successful calls by kind.
    packed_calls: int = 0
    plain_calls: int = 0
    json_calls: int = 0
    stream_calls: int = 0
    #: Function-call answers given: plain calls answered with a ``functionCall`` part, plus
    #: packed items answered with ``function_calls``.
    function_calls: int = 0
    #: ``inlineData`` parts (images and such) received in successful calls.
    inline_parts: int = 0
    #: Token usage reported in successful answers.
    prompt_tokens: int = 0
    output_tokens: int = 0
    #: The part of ``prompt_tokens`` served from the implicit cache (``cachedContentTokenCount``).
    cached_tokens: int = 0
    #: Calls blocked for carrying ``block_marker`` (HTTP 200, no candidates), not counted in
    #: ``calls``: every generateContent call made is ``calls + blocked_calls + errors``.
    blocked_calls: int = 0
    #: Requests rejected as malformed (400), not counted in ``errors``.
    bad_requests: int = 0
    #: Batch API jobs created (``batchGenerateContent``), and the requests in them: answered
    #: apart from the interactive calls above, outside their quotas and slots.
    batch_jobs: int = 0
    batch_items: int = 0
    #: Token usage reported in the batch jobs' answers.
    batch_prompt_tokens: int = 0
    batch_output_tokens: int = 0
    batch_cached_tokens: int = 0
    #: Injected errors by HTTP status; 429s of a quota by quota (``429:rpm``, ``429:tpm``,
    #: ``429:rpd``), so the values add up to ``errors``.
    errors_by_code: dict[str, int] = field(default_factory=dict)

    def count_error(self, code: int, label: str = "") -> None:
        """Record one injected error, under ``label`` in ``errors_by_code`` if given (a quota's
        429 is ``429:rpm``, ``429:tpm`` or ``429:rpd``; a random one plain ``429``)."""
        self.errors += 1
        key = label or str(code)
        self.errors_by_code[key] = self.errors_by_code.get(key, 0) + 1

    def enter_slot(self) -> None:
        """Record a call starting to hold a slot."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave_slot(self, busy_ms: float) -> None:
        """Record a call giving its slot back after ``busy_ms``."""
        self.in_flight -= 1
        self.busy_ms_total += busy_ms

    def reset(self) -> None:
        """Zero the totals; gauges of calls still running are kept so they stay consistent."""
        in_flight, waiting = self.in_flight, self.waiting
        fresh = Stats(in_flight=in_flight, max_in_flight=in_flight, waiting=waiting)
        self.__dict__.update(fresh.__dict__)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON body of ``GET /_sim/stats``."""
        data = asdict(self)
        data["slot_wait_ms_total"] = round(self.slot_wait_ms_total, 3)
        data["busy_ms_total"] = round(self.busy_ms_total, 3)
        return data


class RunningCalls:
    """Calls holding a slot now, so a snapshot can count the part of their work already done.

    ``Stats`` counts a call when it ends, whole: two snapshots of a window then hold the calls
    that ended inside it, each with work from before the window too. With a few long calls that
    start together (8 slots, 4 s a call), how many ends fall inside a 20 s window swings the
    count by a tenth either way. Counted pro rata instead (a call's items and slot time spread
    evenly over its time in the slot), the difference of two snapshots is the work done in the
    window itself. A call cancelled before its end takes its share back out.
    """

    def __init__(self) -> None:
        self._calls: dict[int, tuple[float, float, int]] = {}
        self._tokens = itertools.count()

    def start(self, now: float, duration_s: float, items: int) -> int:
        """Record a call entering its slot for ``duration_s``, answering ``items``; its token."""
        token = next(self._tokens)
        self._calls[token] = (now, duration_s, items)
        return token

    def end(self, token: int) -> None:
        """Forget a call that gave its slot back (its whole work is in ``Stats`` now)."""
        self._calls.pop(token, None)

    def progress(self, now: float) -> dict[str, float]:
        """``items_in_progress`` (items answered so far, pro rata) and ``busy_ms_in_progress``
        (slot time spent so far) of the calls running at ``now``."""
        items = busy = 0.0
        for started, duration_s, count in self._calls.values():
            elapsed = max(0.0, now - started)
            busy += elapsed
            items += count * (min(1.0, elapsed / duration_s) if duration_s > 0 else 1.0)
        return {"items_in_progress": round(items, 3), "busy_ms_in_progress": round(busy * 1000, 3)}
