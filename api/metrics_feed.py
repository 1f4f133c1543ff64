"""The latest metrics snapshot, pushed to every stream in the process by one subscription.

A dashboard viewer holds an open SSE response for as long as the page is open; giving each
its own Redis subscription would tie up a pool connection per viewer. One listener thread
(a greenlet under gevent) keeps the latest snapshot and wakes the streams instead.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)


class MetricsFeed:
    """Latest snapshot payload plus a generation counter streams wait on."""

    def __init__(self, client: redis.Redis, channel: str, latest_key: str) -> None:
        self._redis = client
        self._channel = channel
        self._latest_key = latest_key
        self._condition = threading.Condition()
        self._payload: str | None = None
        self._generation = 0
        self._listener: threading.Thread | None = None

    def latest(self) -> str | None:
        """The newest snapshot JSON (read from Redis when nothing was pushed yet)."""
        with self._condition:
            if self._payload is not None:
                return self._payload
        value = self._redis.get(self._latest_key)
        return value.decode() if isinstance(value, bytes) else value

    def wait_newer(self, generation: int, timeout_s: float) -> tuple[int, str | None]:
        """Block until a snapshot newer than ``generation`` arrives (or the timeout)."""
        self._ensure_listener()
        with self._condition:
            self._condition.wait_for(lambda: self._generation > generation, timeout_s)
            return self._generation, self._payload

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    def _ensure_listener(self) -> None:
        with self._condition:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="metrics-feed", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._channel)
                backoff = 0.1
                for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        data = data.decode()
                    if isinstance(data, str):
                        with self._condition:
                            self._payload = data
                            self._generation += 1
                            self._condition.notify_all()
            except redis.RedisError as exc:
                log.warning("metrics feed lost its subscription (%s); resubscribing", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                pubsub.close()
