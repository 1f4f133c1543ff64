"""The response cache: identical requests of one tenant answered from an earlier success.

Entries belong to a tenant (``<prefix>:cache:<tenant>:<digest>``): a tenant is answered only
from its own entries, so ``cached`` never tells it what another tenant asked. The digest is a
SHA-256 over the canonical JSON of everything that shapes an answer (``ANSWER_FIELDS``: model,
system text, generation settings, prompt, context, client-held history, strategy, streaming,
attachments, functions and how they may be called, tool results, the answer's schema;
preferences count as merged into those). Time-sensitive prompts (a configurable word list:
now, today, latest, ...) are neither read from nor written to the cache, and only complete
successes (finish reason ``STOP``) are ever written.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import redis

from batchgate import keys as key_names

#: The fields of a task message that shape its answer (absent, None, empty and false alike).
ANSWER_FIELDS = (
    "model",
    "system",
    "generation",
    "prompt",
    "context",
    "history",
    "strategy",
    "stream",
    "attachments",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "tool_results",
    "response_schema",
    "response_mime_type",
)
#: Fields of a task request that do not shape its answer (who asks, how it travels).
NOT_ANSWER_FIELDS = ("cache", "session_id", "user_id", "lane")


def cache_key(message: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of a task message's answer-shaping fields."""
    shaping = {name: message[name] for name in ANSWER_FIELDS if message.get(name)}
    if message.get("parallel_tool_calls") is False:  # its default is true: false shapes the answer
        shaping["parallel_tool_calls"] = False
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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
    """Cached results by tenant and digest, each expiring ``ttl_s`` after it was written."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s

    def record_key(self, tenant: str, digest: str) -> str:
        """The Redis string holding ``tenant``'s entry for ``digest`` (the admission script builds
        the same name)."""
        return key_names.cache_entry(self._prefix, tenant, digest)

    def get(self, tenant: str, digest: str) -> dict[str, Any] | None:
        return self.decode(self._redis.get(self.record_key(tenant, digest)))

    @staticmethod
    def decode(raw: str | bytes | None) -> dict[str, Any] | None:
        """An entry from its raw value (``GET`` of ``record_key``), or None."""
        return json.loads(raw) if raw else None

    def put_many(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Write results under their record keys (``record_key``; complete successes only: the
        caller's duty) in one round trip."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for record_key, result in entries:
            pipe.set(
                record_key,
                json.dumps(result, separators=(",", ":"), ensure_ascii=False),
                ex=self._ttl_s,
            )
        pipe.execute()
