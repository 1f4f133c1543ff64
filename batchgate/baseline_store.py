"""The active baseline and the last drift signal, in Redis, where every process finds them.

The metrics task (on whichever worker runs it) evaluates the drift signal against the
active baseline and stores the result here, so the next run, on any worker, continues its
hysteresis; the API serves both. The parsed baseline is kept per process and re-parsed
only when the stored JSON changes.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from baseline.model import PerformanceBaseline
from batchgate import keys as key_names


class BaselineStore:
    """Reads and writes the active baseline and the last drift result."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self.active_key = key_names.baseline_active(prefix)
        self.drift_key = key_names.drift_latest(prefix)
        self._parsed: tuple[str, PerformanceBaseline] | None = None

    def activate(self, baseline: PerformanceBaseline) -> None:
        """Make ``baseline`` the one drift is measured against (and forget the last signal)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self.active_key, baseline.to_json())
        pipe.delete(self.drift_key)
        pipe.execute()

    def active_json(self) -> str | None:
        raw = self._redis.get(self.active_key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def active(self) -> PerformanceBaseline | None:
        """The active baseline, or None when none was activated."""
        text = self.active_json()
        if text is None:
            return None
        if self._parsed is None or self._parsed[0] != text:
            self._parsed = (text, PerformanceBaseline.from_json(text, "the active baseline"))
        return self._parsed[1]

    def save_drift(self, result: dict[str, Any]) -> str:
        payload = json.dumps(result, separators=(",", ":"))
        self._redis.set(self.drift_key, payload)
        return payload

    def drift_json(self) -> str | None:
        raw = self._redis.get(self.drift_key)
        return raw.decode() if isinstance(raw, bytes) else raw

    def last_drift(self) -> dict[str, Any] | None:
        text = self.drift_json()
        return None if text is None else json.loads(text)  # type: ignore[no-any-return]
