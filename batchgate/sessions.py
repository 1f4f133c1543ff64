"""Conversation sessions in Redis: ordered turns, in the namespace of the tenant that uses them.

A session id is the client's choice, and means something only within its tenant: two
tenants may use the same id, each for a conversation of its own, and neither can learn
that the other did. A session is two keys that expire together, ``ttl_s`` after their
last use, named by a digest of (tenant, id), so no id, whatever it contains, can name
another session's keys or anything else in Redis:

- ``<prefix>:session:<digest>`` (hash): ``tenant``, ``id``, ``next`` (the last turn number
  handed out) and ``applied`` (the last turn number that has landed, answered or failed);
- ``<prefix>:session:<digest>:turns`` (list): the history, one JSON turn per entry
  (``{"role": "user"|"model", "text", "task_id", "seq", "at"}``, and ``parts`` when the turn
  carried more than text: the model's function calls, the user's tool results and inline data).

State that cannot be read (a key of another type, an entry that is not JSON) is reported
as ``unreadable``: it fails that session's turns, with a clear error, and nobody else's.

The API numbers each task of a session as it is accepted (``claim_turn``), so the order
is the order of acceptance, whichever replica accepted it. A worker answers turn ``n``
only once turn ``n - 1`` has landed (or after a bounded wait), and lands a turn in the
same Redis script that finishes its task (``TaskStore.finish``), so a crash can never
record an answer without its turn or a turn without its answer, and a redelivered
message can never append twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from batchgate import keys as key_names
from batching.tokens import estimate_tokens

#: Returned by the claim script when the session's stored state cannot be used.
_UNREADABLE = -2

_CLAIM_TURN = """
local meta_type = redis.call('TYPE', KEYS[1])['ok']
local turns_type = redis.call('TYPE', KEYS[2])['ok']
if (meta_type ~= 'hash' and meta_type ~= 'none') or (turns_type ~= 'list' and turns_type ~= 'none') then
  return -2
end
if redis.call('HEXISTS', KEYS[1], 'next') == 0 then
  redis.call('HSET', KEYS[1], 'tenant', ARGV[1], 'id', ARGV[4], 'created_at', ARGV[3], 'applied', 0)
end
local next_seq = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
if not next_seq then
  return -2
end
local seq = redis.call('HINCRBY', KEYS[1], 'next', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return seq
"""


class SessionUnreadable(Exception):
    """A session's stored state cannot be read or used."""


#: A session as the workers address it: (tenant, session id).
SessionRef = tuple[str, str]


@dataclass(frozen=True)
class Turn:
    """One entry of a conversation: what the user said, or what the model answered."""

    role: str
    text: str
    #: Parts besides the text (google-genai's snake_case form): ``function_call``,
    #: ``function_response``, ``inline_data``.
    parts: tuple[dict[str, Any], ...] = ()

    @property
    def contents(self) -> tuple[dict[str, Any], ...]:
        """Every part of the turn, the text last (left out when empty beside other parts)."""
        return (*self.parts, {"text": self.text}) if self.text or not self.parts else self.parts

    @property
    def tokens(self) -> int:
        """Estimated tokens of the turn (inline data at Gemini's count for a small image)."""
        inline = sum(1 for part in self.parts if "inline_data" in part)
        others = [part for part in self.parts if "inline_data" not in part]
        return estimate_tokens(self.text) + estimate_tokens(json.dumps(others)) * bool(others) + 258 * inline


@dataclass(frozen=True)
class SessionTurn:
    """Where a task stands in its conversation: read from its message by the worker."""

    session_id: str
    seq: int
    tenant: str = ""

    @property
    def ref(self) -> SessionRef:
        return (self.tenant, self.session_id)


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

    def meta_key(self, tenant: str, session_id: str) -> str:
        digest = hashlib.sha256(f"{tenant}\n{session_id}".encode()).hexdigest()
        return key_names.session(self._prefix, digest)

    def turns_key(self, tenant: str, session_id: str) -> str:
        return f"{self.meta_key(tenant, session_id)}:turns"

    def claim_turn(self, tenant: str, session_id: str, now: float) -> int:
        """The next turn number of ``tenant``'s session (created if new); ``SessionUnreadable``
        when its stored state cannot be used."""
        seq = int(
            self._claim(
                keys=[self.meta_key(tenant, session_id), self.turns_key(tenant, session_id)],
                args=[tenant, self.ttl_s, repr(now), session_id],
            )
        )
        if seq == _UNREADABLE:
            raise SessionUnreadable(session_id)
        return seq

    def read(self, tenant: str, session_id: str) -> dict[str, Any] | None:
        """The session as the API shows it, refreshing its TTL; None if the tenant has none by
        that id; ``SessionUnreadable`` when its stored state cannot be read."""
        meta_key, turns_key = self.meta_key(tenant, session_id), self.turns_key(tenant, session_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(meta_key)
        pipe.lrange(turns_key, 0, -1)
        pipe.expire(meta_key, self.ttl_s)
        pipe.expire(turns_key, self.ttl_s)
        meta, turns, _, _ = pipe.execute(raise_on_error=False)
        if isinstance(meta, Exception) or isinstance(turns, Exception):
            raise SessionUnreadable(session_id)
        if not meta:
            return None
        try:
            return {
                "id": session_id,
                "turns": [json.loads(t) for t in turns],
                "turns_submitted": int(meta.get("next", 0)),
                "turns_landed": int(meta.get("applied", 0)),
                "created_at": float(meta.get("created_at", 0)),
                "expires_in_s": self.ttl_s,
            }
        except ValueError:
            raise SessionUnreadable(session_id) from None

    def clear(self, tenant: str, session_id: str) -> bool:
        """Empty the history (turn numbering goes on, so turns in flight still land in order);
        False if the tenant has no session by that id."""
        if not self._redis.exists(self.meta_key(tenant, session_id)):
            return False
        self._redis.delete(self.turns_key(tenant, session_id))
        return True

    def applied(self, refs: Sequence[SessionRef]) -> tuple[dict[SessionRef, int], set[SessionRef]]:
        """The last landed turn number of each session, in one round trip, and the sessions
        whose state cannot be read."""
        pipe = self._redis.pipeline(transaction=False)
        for tenant, session_id in refs:
            pipe.hget(self.meta_key(tenant, session_id), "applied")
        landed: dict[SessionRef, int] = {}
        unreadable: set[SessionRef] = set()
        for ref, value in zip(refs, pipe.execute(raise_on_error=False), strict=True):
            try:
                if isinstance(value, Exception):
                    raise ValueError(str(value))
                landed[ref] = int(value or 0)
            except ValueError:
                unreadable.add(ref)
        return landed, unreadable

    def histories(self, refs: Sequence[SessionRef]) -> tuple[dict[SessionRef, list[Turn]], set[SessionRef]]:
        """Every turn of each session, oldest first, in one round trip, and the sessions whose
        history cannot be read."""
        pipe = self._redis.pipeline(transaction=False)
        for tenant, session_id in refs:
            pipe.lrange(self.turns_key(tenant, session_id), 0, -1)
        found: dict[SessionRef, list[Turn]] = {}
        unreadable: set[SessionRef] = set()
        for ref, entries in zip(refs, pipe.execute(raise_on_error=False), strict=True):
            try:
                if isinstance(entries, Exception):
                    raise ValueError(str(entries))
                found[ref] = [_turn(json.loads(raw)) for raw in entries]
            except (ValueError, TypeError, AttributeError):
                unreadable.add(ref)
        return found, unreadable

    def landing(
        self,
        turn: SessionTurn,
        task_id: str,
        prompt: str,
        answer: str | None,
        now: float,
        *,
        user_parts: Sequence[dict[str, Any]] = (),
        model_parts: Sequence[dict[str, Any]] = (),
    ) -> Landing:
        """The landing of a finished task: its user turn and answer (with their parts besides
        text: tool results, inline data, the model's function calls), or nothing if it failed."""
        turns: tuple[str, ...] = ()
        if answer is not None:
            entries = []
            for role, text, parts in (("user", prompt, user_parts), ("model", answer, model_parts)):
                entry: dict[str, Any] = {
                    "role": role,
                    "text": text,
                    "task_id": task_id,
                    "seq": turn.seq,
                    "at": now,
                }
                if parts:
                    entry["parts"] = list(parts)
                entries.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
            turns = tuple(entries)
        return Landing(
            meta_key=self.meta_key(turn.tenant, turn.session_id),
            turns_key=self.turns_key(turn.tenant, turn.session_id),
            seq=turn.seq,
            turns=turns,
            ttl_s=self.ttl_s,
            max_turns=self.max_turns,
        )


def fit_history(turns: Sequence[Turn], budget_tokens: int) -> list[Turn]:
    """The newest turns whose estimated tokens fit ``budget_tokens``, oldest dropped first;
    the result starts with a user turn that is not a function's result, as Gemini expects of
    a conversation."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = turn.tokens
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # Gemini answers a function response only right after the call it answers.
    while kept and (kept[0].role != "user" or any("function_response" in part for part in kept[0].parts)):
        kept.pop(0)
    return kept


def ready_turns(pending: Sequence[SessionTurn | None], applied: dict[SessionRef, int]) -> list[int]:
    """Indexes of the pending requests that may run now: every request outside a session,
    and each session's lowest pending turn once the turn before it has landed."""
    outside = [index for index, turn in enumerate(pending) if turn is None]
    landed = [
        index
        for index in lowest_turns(pending)
        if (turn := pending[index]) is not None and applied.get(turn.ref, 0) >= turn.seq - 1
    ]
    return sorted(outside + landed)


def lowest_turns(pending: Sequence[SessionTurn | None]) -> list[int]:
    """Indexes of each session's lowest pending turn (run them when waiting is over)."""
    lowest: dict[SessionRef, tuple[int, int]] = {}
    for index, turn in enumerate(pending):
        if turn is not None and (turn.ref not in lowest or turn.seq < lowest[turn.ref][0]):
            lowest[turn.ref] = (turn.seq, index)
    return sorted(index for _, index in lowest.values())


def _turn(entry: Any) -> Turn:
    if not isinstance(entry, dict):
        raise ValueError("a turn must be a JSON object")
    parts = entry.get("parts") or []
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise ValueError("a turn's parts must be JSON objects")
    return Turn(role=str(entry.get("role", "user")), text=str(entry.get("text", "")), parts=tuple(parts))
