"""Idempotency keys: the same key and body within the TTL return the original task."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

PUBLISHED = "published"


@dataclass(frozen=True)
class Claim:
    """``task_id`` is the new task's id when ``new``; otherwise the original's (or None on conflict)."""

    new: bool
    task_id: str | None
    conflict: bool = False
    #: The original's message is known to be on the queue (``mark_published``).
    published: bool = False


class IdempotencyStore:
    """Remembers (caller, Idempotency-Key) → (task id, body hash) for ``ttl_s``."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def _key(self, owner: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
        return f"{self._prefix}:idem:{owner}:{digest}"

    def claim(self, owner: str, idempotency_key: str, body_hash: str, task_id: str) -> Claim:
        """Atomically bind the key to ``task_id``, or report the task it is already bound to."""
        key = self._key(owner, idempotency_key)
        if self._redis.set(key, f"{task_id} {body_hash}", nx=True, ex=self._ttl_s):
            return Claim(new=True, task_id=task_id)
        existing = self._redis.get(key)
        if existing is None:  # expired between the two calls: try once more
            if self._redis.set(key, f"{task_id} {body_hash}", nx=True, ex=self._ttl_s):
                return Claim(new=True, task_id=task_id)
            existing = self._redis.get(key) or " "
        original_id, _, rest = str(existing).partition(" ")
        original_hash, _, published = rest.partition(" ")
        if original_hash != body_hash:
            return Claim(new=False, task_id=None, conflict=True)
        return Claim(new=False, task_id=original_id, published=published == PUBLISHED)

    def original(self, owner: str, idempotency_key: str, body_hash: str) -> str | None:
        """The task id already bound to the key and this body, if any (nothing is claimed)."""
        existing = self._redis.get(self._key(owner, idempotency_key))
        task_id, _, rest = str(existing or "").partition(" ")
        return task_id if existing and rest.partition(" ")[0] == body_hash else None

    def mark_published(self, owner: str, idempotency_key: str, task_id: str, body_hash: str) -> None:
        """Record that the claimed task's message reached the queue: a retry need not send it."""
        value = f"{task_id} {body_hash} {PUBLISHED}"
        self._redis.set(self._key(owner, idempotency_key), value, xx=True, keepttl=True)

    def release(self, owner: str, idempotency_key: str) -> None:
        """Forget a claim whose task could not be enqueued, so a retry can succeed."""
        self._redis.delete(self._key(owner, idempotency_key))
