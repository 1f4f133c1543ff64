"""A worker bootstep that tells the API it is consuming (read by ``GET /ready``)."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis
from celery import bootsteps

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
#: Entries of consumers silent for this long are removed (they died without saying so).
FORGET_AFTER_S = 3600.0


def workers_key(prefix: str) -> str:
    """Sorted set of consumer names scored by their last heartbeat (wall clock)."""
    return f"{prefix}:workers"


class Heartbeat(bootsteps.StartStopStep):
    """Every few seconds, record this consumer in ``<prefix>:workers``; remove it on stop."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._tref: Any = None
        self._redis: redis.Redis | None = None

    def start(self, parent: Any) -> None:
        settings = parent.app.batchgate_settings
        self._redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        self._key = workers_key(settings.key_prefix)
        self._name = parent.hostname
        self._beat()
        self._tref = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL_S, self._beat)

    def stop(self, parent: Any) -> None:
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError):
                self._redis.zrem(self._key, self._name)

    def _beat(self) -> None:
        assert self._redis is not None
        try:
            now = time.time()
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(self._key, {self._name: now})
            pipe.zremrangebyscore(self._key, "-inf", now - FORGET_AFTER_S)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)
