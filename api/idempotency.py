"""Idempotency keys: the same key and body within the TTL return the original task.

A key is bound to a task id by the first attempt (``claim``) before anything else happens,
as ``<task id> <body hash> <state> <claimed at>``. A retry finds the claim: the original
record if it exists; if not yet, the first attempt is either still on its way (wait for its
record, at most ``TAKEOVER_GRACE_S`` after the claim) or died before writing it (past the
grace, the retry does its work under the same id; records are created only if absent, so two
attempts racing past the grace still make one task).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis

from batchgate import keys as key_names

PUBLISHED = "published"
CLAIMED = "claimed"
#: How long after a claim its attempt is presumed alive (between claiming and writing the
#: record an API spends milliseconds; a replica killed in between takes seconds to notice).
TAKEOVER_GRACE_S = 5.0


@dataclass(frozen=True)
class Claim:
    """``task_id`` is the new task's id when ``new``; otherwise the original's (or None on conflict)."""

    new: bool
    task_id: str | None
    conflict: bool = False
    #: The original's message is known to be on the queue (``mark_published``).
    published: bool = False
    #: Seconds since the original attempt claimed the key (0 for a new claim).
    age_s: float = 0.0


class IdempotencyStore:
    """Remembers (caller, Idempotency-Key) → (task id, body hash) for ``ttl_s``."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def _key(self, owner: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
        return key_names.idempotency(self._prefix, owner, digest)

    def claim(
        self,
        owner: str,
        idempotency_key: str,
        body_hash: str,
        task_id: str,
        now: float | None = None,
        ttl_s: int | None = None,
    ) -> Claim:
        """Atomically bind the key to ``task_id`` (for ``ttl_s``, default the store's), or
        report the task it is already bound to."""
        now = time.time() if now is None else now
        key = self._key(owner, idempotency_key)
        value = f"{task_id} {body_hash} {CLAIMED} {now!r}"
        for _ in range(2):  # a claim that expires between SET and GET: try once more
            if self._redis.set(key, value, nx=True, ex=ttl_s or self._ttl_s):
                return Claim(new=True, task_id=task_id)
            existing = self._redis.get(key)
            if existing is not None:
                break
        original_id, original_hash, state, claimed_at = _parse(existing)
        if original_hash != body_hash:
            return Claim(new=False, task_id=None, conflict=True)
        return Claim(
            new=False, task_id=original_id, published=state == PUBLISHED, age_s=max(0.0, now - claimed_at)
        )

    def peek(self, owner: str, idempotency_key: str, now: float | None = None) -> Claim | None:
        """The claim as it stands (nothing is claimed), or None."""
        existing = self._redis.get(self._key(owner, idempotency_key))
        if existing is None:
            return None
        task_id, _, state, claimed_at = _parse(existing)
        now = time.time() if now is None else now
        return Claim(
            new=False, task_id=task_id, published=state == PUBLISHED, age_s=max(0.0, now - claimed_at)
        )

    def original(self, owner: str, idempotency_key: str, body_hash: str) -> str | None:
        """The task id already bound to the key and this body, if any (nothing is claimed)."""
        existing = self._redis.get(self._key(owner, idempotency_key))
        task_id, original_hash, _, _ = _parse(existing)
        return task_id if existing and original_hash == body_hash else None

    def mark_published(self, owner: str, idempotency_key: str, task_id: str, body_hash: str) -> None:
        """Record that the claimed task's message reached the queue: a retry need not send it."""
        value = f"{task_id} {body_hash} {PUBLISHED} {time.time()!r}"
        self._redis.set(self._key(owner, idempotency_key), value, xx=True, keepttl=True)

    def release(self, owner: str, idempotency_key: str) -> None:
        """Forget a claim whose task could not be enqueued, so a retry can succeed."""
        self._redis.delete(self._key(owner, idempotency_key))


def _parse(value: object) -> tuple[str, str, str, float]:
    """(task id, body hash, state, claimed at) of a stored claim; an older form without a time
    counts as claimed long ago."""
    text = value.decode() if isinstance(value, bytes) else str(value or "")
    parts = text.split(" ")
    task_id = parts[0] if parts else ""
    body_hash = parts[1] if len(parts) > 1 else ""
    state = parts[2] if len(parts) > 2 else CLAIMED
    try:
        claimed_at = float(parts[3]) if len(parts) > 3 else 0.0
    except ValueError:
        claimed_at = 0.0
    return task_id, body_hash, state, claimed_at
