"""Conversation sessions in Redis: ordered turns, owned by the API key that started them.

A session is two keys that expire together, ``ttl_s`` after their last use:

- ``<prefix>:session:<id>`` (hash): ``owner``, ``next`` (the last turn number handed out)
  and ``applied`` (the last turn number that has landed, answered or failed);
- ``<prefix>:session:<id>:turns`` (list): the history, one JSON turn per entry
  (``{"role": "user"|"model", "text", "task_id", "seq", "at"}``).

The API numbers each task of a session as it is accepted (``claim_turn``), so the order
is the order of acceptance, whichever replica accepted it. A worker answers turn ``n``
only once turn ``n - 1`` has landed (or after a bounded wait), and lands a turn in the
same Redis script that finishes its task (``TaskStore.finish``), so a crash can never
record an answer without its turn or a turn without its answer, and a redelivered
message can never append twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from batching.tokens import estimate_tokens

#: Returned by the claim script when the session belongs to another key.
_FOREIGN = -1

_CLAIM_TURN = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then
  return -1
end
if not owner then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'created_at', ARGV[3], 'applied', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 'next', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return seq
"""


@dataclass(frozen=True)
class Turn:
    """One entry of a conversation: what the user said, or what the model answered."""

    role: str
    text: str


@dataclass(frozen=True)
class SessionTurn:
    """Where a task stands in its conversation: read from its message by the worker."""

    session_id: str
    seq: int


@dataclass(frozen=True)
class Landing:
    """What ``TaskStore.finish`` writes for a session's task, in the same script."""

    meta_key: str
    turns_key: str
    seq: int
    #: JSON turns to append (the user turn and the answer); empty for a failed task.
    turns: tuple[str, ...]
    ttl_s: int
    max_turns: int


class SessionStore:
    """Claims turn numbers (API), reads histories and prepares landings (workers)."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int, max_turns: int) -> None:
        self._redis = client
        self._prefix = prefix
        self.ttl_s = ttl_s
        self.max_turns = max_turns
        self._claim = client.register_script(_CLAIM_TURN)

    def meta_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}"

    def turns_key(self, session_id: str) -> str:
        return f"{self._prefix}:session:{session_id}:turns"

    def claim_turn(self, session_id: str, owner: str, now: float) -> int | None:
        """The next turn number of the session (created for ``owner`` if new); None when the
        session belongs to another key."""
        seq = int(
            self._claim(
                keys=[self.meta_key(session_id), self.turns_key(session_id)],
                args=[owner, self.ttl_s, repr(now)],
            )
        )
        return None if seq == _FOREIGN else seq

    def read(self, session_id: str, owner: str) -> dict[str, Any] | None:
        """The session as the API shows it, refreshing its TTL; None if unknown or foreign."""
        meta_key, turns_key = self.meta_key(session_id), self.turns_key(session_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(meta_key)
        pipe.lrange(turns_key, 0, -1)
        pipe.expire(meta_key, self.ttl_s)
        pipe.expire(turns_key, self.ttl_s)
        meta, turns, _, _ = pipe.execute()
        if not meta or meta.get("owner") != owner:
            return None
        return {
            "id": session_id,
            "turns": [json.loads(t) for t in turns],
            "turns_submitted": int(meta.get("next", 0)),
            "turns_landed": int(meta.get("applied", 0)),
            "created_at": float(meta.get("created_at", 0)),
            "expires_in_s": self.ttl_s,
        }

    def clear(self, session_id: str, owner: str) -> bool:
        """Empty the history (turn numbering goes on, so turns in flight still land in order);
        False if unknown or foreign."""
        meta_key = self.meta_key(session_id)
        if self._redis.hget(meta_key, "owner") != owner:
            return False
        self._redis.delete(self.turns_key(session_id))
        return True

    def applied(self, session_ids: Sequence[str]) -> dict[str, int]:
        """The last landed turn number of each session, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hget(self.meta_key(session_id), "applied")
        return {s: int(v or 0) for s, v in zip(session_ids, pipe.execute(), strict=True)}

    def histories(self, session_ids: Sequence[str]) -> dict[str, list[Turn]]:
        """Every turn of each session, oldest first, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.lrange(self.turns_key(session_id), 0, -1)
        return {
            s: [_turn(json.loads(raw)) for raw in entries]
            for s, entries in zip(session_ids, pipe.execute(), strict=True)
        }

    def landing(
        self, turn: SessionTurn, task_id: str, prompt: str, answer: str | None, now: float
    ) -> Landing:
        """The landing of a finished task: its user turn and answer, or nothing if it failed."""
        turns: tuple[str, ...] = ()
        if answer is not None:
            turns = tuple(
                json.dumps(
                    {"role": role, "text": text, "task_id": task_id, "seq": turn.seq, "at": now},
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
                for role, text in (("user", prompt), ("model", answer))
            )
        return Landing(
            meta_key=self.meta_key(turn.session_id),
            turns_key=self.turns_key(turn.session_id),
            seq=turn.seq,
            turns=turns,
            ttl_s=self.ttl_s,
            max_turns=self.max_turns,
        )


def fit_history(turns: Sequence[Turn], budget_tokens: int) -> list[Turn]:
    """The newest turns whose estimated tokens fit ``budget_tokens``, oldest dropped first;
    the result starts with a user turn, as Gemini expects of a conversation."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_tokens(turn.text)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


def ready_turns(pending: Sequence[SessionTurn | None], applied: dict[str, int]) -> list[int]:
    """Indexes of the pending requests that may run now: every request outside a session,
    and each session's lowest pending turn once the turn before it has landed."""
    outside = [index for index, turn in enumerate(pending) if turn is None]
    landed = [
        index
        for index in lowest_turns(pending)
        if (turn := pending[index]) is not None and applied.get(turn.session_id, 0) >= turn.seq - 1
    ]
    return sorted(outside + landed)


def lowest_turns(pending: Sequence[SessionTurn | None]) -> list[int]:
    """Indexes of each session's lowest pending turn (run them when waiting is over)."""
    lowest: dict[str, tuple[int, int]] = {}
    for index, turn in enumerate(pending):
        if turn is not None and (turn.session_id not in lowest or turn.seq < lowest[turn.session_id][0]):
            lowest[turn.session_id] = (turn.seq, index)
    return sorted(index for _, index in lowest.values())


def _turn(entry: dict[str, Any]) -> Turn:
    return Turn(role=str(entry.get("role", "user")), text=str(entry.get("text", "")))
