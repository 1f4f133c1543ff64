"""A worker bootstep: say this consumer is alive (``GET /ready``), keep its leases, reap the dead's.

Every ``HEARTBEAT_INTERVAL_S`` the consumer records itself in ``<prefix>:workers`` (what
``/ready`` reads) and beats for its leases (``workers.leases``); every ``FLUSH_S`` it writes the
messages it took and released. On each beat it also looks for lease holders silent longer than
``BATCHGATE_WORKER_LEASE_S`` (dead workers, on any host) and puts their messages back on the
queue with kombu's own restore-by-tag, so a killed worker's tasks run again within seconds
instead of after the broker's visibility timeout. Everything runs on the consumer's own timer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import bootsteps

from batchgate.keys import workers_key
from batchgate.settings import BrokerSettings
from workers.leases import FLUSH_S, LeaseBook

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
#: Entries of consumers silent for this long are removed (they died without saying so).
FORGET_AFTER_S = 3600.0


def heartbeat_step(
    broker: BrokerSettings, leases: LeaseBook | None, requeue_bulk: Callable[[str], int] | None = None
) -> type[bootsteps.StartStopStep]:
    """The bootstep class for this worker: Celery instantiates steps itself, so what they need
    is given to the class, not hung on the Celery app. ``requeue_bulk(holder)`` puts a dead
    worker's bulk-lane tasks back in line (``workers.bulk_lane``)."""
    return type(
        "Heartbeat",
        (Heartbeat,),
        {
            "broker": broker,
            "leases": leases,
            "requeue_bulk": staticmethod(requeue_bulk) if requeue_bulk else None,
        },
    )


class Heartbeat(bootsteps.StartStopStep):
    """Record this consumer in ``<prefix>:workers``, keep its leases, reap dead holders'."""

    requires = {"celery.worker.consumer.tasks:Tasks"}
    #: Set by ``heartbeat_step``.
    broker: BrokerSettings
    leases: LeaseBook | None = None
    requeue_bulk: Callable[[str], int] | None = None

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._trefs: list[Any] = []
        self._redis: redis.Redis | None = None
        self._leases: LeaseBook | None = None
        self._consumer: Any = None

    def start(self, parent: Any) -> None:
        self._redis = redis.Redis.from_url(self.broker.redis_url, decode_responses=True)
        self._key = workers_key(self.broker.key_prefix)
        self._name = parent.hostname
        self._consumer = parent
        self._leases = self.leases
        self._queue = self.broker.queue
        self._beat()
        self._trefs = [parent.timer.call_repeatedly(HEARTBEAT_INTERVAL_S, self._beat)]
        if self._leases is not None:
            self._trefs.append(parent.timer.call_repeatedly(FLUSH_S, self._flush))

    def stop(self, parent: Any) -> None:
        for tref in self._trefs:
            tref.cancel()
        self._trefs = []
        if self._redis is not None:
            with contextlib.suppress(redis.RedisError):
                self._redis.zrem(self._key, self._name)
        if self._leases is not None:
            # A warm shutdown: kombu gives back every unacknowledged message itself.
            with contextlib.suppress(redis.RedisError):
                self._leases.stop()

    def _beat(self) -> None:
        assert self._redis is not None
        try:
            now = time.time()
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(self._key, {self._name: now})
            pipe.zremrangebyscore(self._key, "-inf", now - FORGET_AFTER_S)
            pipe.execute()
            if self._leases is not None:
                self._leases.beat(now)
                self._reap(now)
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)

    def _flush(self) -> None:
        assert self._leases is not None
        try:
            self._leases.flush()
        except redis.RedisError as exc:
            log.warning("could not record leases yet: %s", exc)

    def _reap(self, now: float) -> None:
        """Give back the messages of every holder whose lease lapsed, and those of the batch
        queue that no live worker holds a lease on although they were taken a lapse ago."""
        assert self._leases is not None
        qos = self._consumer.task_consumer.channel.qos
        for holder in self._leases.lapsed(now):
            tasks = self._leases.reap(holder, qos.restore_by_tag)
            if tasks:
                log.warning(
                    "worker %s stopped beating: %d of its messages are back on the queue", holder, len(tasks)
                )
            requeued = self.requeue_bulk(holder) if self.requeue_bulk is not None else 0
            if requeued:
                log.warning(
                    "worker %s stopped beating: %d of its bulk tasks are back in line", holder, requeued
                )
        # A worker killed within FLUSH_S of taking a message left it in no lease. A live worker
        # writes a lease at most FLUSH_S after taking a message, so one taken a lapse (less a
        # beat) ago and held in no live lease has no live holder.
        older_than = now - (self._leases.lapse_s - HEARTBEAT_INTERVAL_S)
        unleased = self._leases.unleased(qos.unacked_index_key, qos.unacked_key, self._queue, older_than, now)
        for tag in unleased:
            qos.restore_by_tag(tag)
        if unleased:
            log.warning(
                "%d messages taken by dead workers before their leases were written are back", len(unleased)
            )
