"""The response cache: identical requests answered from an earlier success.

The key is a SHA-256 over the canonical JSON of what determines an answer (model, system
text, generation settings, prompt, context). Time-sensitive prompts (a configurable word
list: now, today, latest, ...) are neither read from nor written to the cache, and only
successes are ever written.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import redis


def cache_key(model: str, system: str | None, generation: dict[str, Any], prompt: str, context: Any) -> str:
    """Hex SHA-256 of the canonical JSON of the answer-determining fields."""
    canonical = json.dumps(
        {"model": model, "system": system, "generation": generation, "prompt": prompt, "context": context},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@lru_cache(maxsize=16)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def is_time_sensitive(texts: Iterable[str], words: tuple[str, ...]) -> bool:
    """True if any text contains one of ``words`` as a whole word (case-insensitive)."""
    pattern = _pattern(words)
    return pattern is not None and any(pattern.search(text) for text in texts if text)


class ResponseCache:
    """Cached results by key, each expiring ``ttl_s`` after it was written."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def record_key(self, key: str) -> str:
        """The Redis string holding the entry for ``key`` (read by the admission's pipeline too)."""
        return f"{self._prefix}:cache:{key}"

    def get(self, key: str) -> dict[str, Any] | None:
        return self.decode(self._redis.get(self.record_key(key)))

    @staticmethod
    def decode(raw: str | bytes | None) -> dict[str, Any] | None:
        """An entry from its raw value (``GET`` of ``record_key``), or None."""
        return json.loads(raw) if raw else None

    def put_many(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Write results (successes only: the caller's duty) in one round trip."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, result in entries:
            pipe.set(
                self.record_key(key),
                json.dumps(result, separators=(",", ":"), ensure_ascii=False),
                ex=self._ttl_s,
            )
        pipe.execute()
