"""Leases: which worker holds which task messages, so a dead worker's come back in seconds.

The broker alone would give a dead worker's unacknowledged messages back only after the
visibility timeout (600 s by default): ten minutes of silence for a client. So every worker
process (a *holder*, named once per process start) records the messages it has taken, buffered
or running, in ``<prefix>:lease:<holder>`` (delivery tag -> task id), and beats in
``<prefix>:lease-holders`` (holder -> last beat, wall clock). A holder whose beat is older than
the lapse (``BATCHGATE_WORKER_LEASE_S``) is dead: any live worker may then put its messages back
on the queue, once (a lock per dead holder), and forget it. A holder that was only slow, not
dead, may then see its tasks run twice; results are written once, so a client still gets one
answer (``batchgate.taskstore``: a task runs only under a claim, which a live holder keeps).

Writes are buffered and flushed every ``FLUSH_S`` by the worker: a worker killed within that
moment of taking a message leaves it to the broker's visibility timeout, the last resort.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable

import redis

from batchgate import keys as key_names

log = logging.getLogger(__name__)

#: How often a worker writes what it took and released since the last flush.
FLUSH_S = 0.1
#: Other queues' unacknowledged messages remembered as not ours (bounded memory).
FOREIGN_TAGS_KEPT = 10_000


def holders_key(prefix: str) -> str:
    """Sorted set of lease holders (worker processes) scored by their last beat."""
    return key_names.lease_holders(prefix)


def lease_key(prefix: str, holder: str) -> str:
    """One holder's messages: delivery tag -> task id."""
    return lease_prefix(prefix) + holder


def lease_prefix(prefix: str) -> str:
    """What every holder's lease key starts with (its name follows)."""
    return key_names.lease_prefix(prefix)


def new_holder() -> str:
    """A name unique to this process start (a restarted worker must not look like its dead self)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def live_leases(client: redis.Redis, prefix: str, now: float, lapse_s: float) -> dict[str, str]:
    """Delivery tag -> task id of every message live workers hold (buffered or running)."""
    live = client.zrangebyscore(holders_key(prefix), now - lapse_s, "+inf")
    pipe = client.pipeline(transaction=False)
    for holder in live:
        pipe.hgetall(lease_key(prefix, _text(holder)))
    return {_text(tag): _text(task_id) for lease in pipe.execute() for tag, task_id in lease.items()}


def oldest_queued_task(client: redis.Redis, queue: str) -> str | None:
    """The task id of the message a worker takes next (kombu pushes left, pops right); None
    when the queue is empty, "" when its head names no task."""
    raw = client.lindex(queue, -1)
    if raw is None:
        return None
    try:
        headers = json.loads(raw).get("headers") or {}
    except (ValueError, AttributeError):
        return ""
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return str(task_id) if task_id else ""


class LeaseBook:
    """This worker's leases, and the reaping of dead holders' leases."""

    def __init__(self, client: redis.Redis, prefix: str, holder: str, lapse_s: float) -> None:
        self._redis = client
        self._prefix = prefix
        self.holder = holder
        self.lapse_s = lapse_s
        self._key = lease_key(prefix, holder)
        self._holders = holders_key(prefix)
        self._lock = threading.Lock()
        self._taken: dict[str, str] = {}
        self._released: set[str] = set()
        #: Unacknowledged messages of other queues seen by ``unleased`` (never read again).
        self._foreign: set[str] = set()
        #: Worker processes alive at the last beat (they share the model's call slots).
        self.live_holders = 1

    @property
    def holders(self) -> str:
        return self._holders

    def take(self, delivery_tag: str, task_id: str) -> None:
        """Record a message as held (written at the next flush)."""
        with self._lock:
            self._taken[delivery_tag] = task_id
            self._released.discard(delivery_tag)

    def release(self, delivery_tags: Iterable[str]) -> None:
        """Forget messages acknowledged (or given back) by this worker."""
        with self._lock:
            for tag in delivery_tags:
                if self._taken.pop(tag, None) is None:
                    self._released.add(tag)

    def flush(self) -> None:
        """Write what was taken and released since the last flush, in one round trip."""
        with self._lock:
            taken, self._taken = self._taken, {}
            released, self._released = self._released, set()
        if not taken and not released:
            return
        pipe = self._redis.pipeline(transaction=False)
        if taken:
            pipe.hset(self._key, mapping=taken)  # type: ignore[arg-type]
        if released:
            pipe.hdel(self._key, *released)
        try:
            pipe.execute()
        except redis.RedisError:
            with self._lock:  # try again at the next flush (a later release wins over a take)
                for tag, task_id in taken.items():
                    if tag not in self._released:
                        self._taken.setdefault(tag, task_id)
                self._released |= {tag for tag in released if tag not in self._taken}
            raise

    def beat(self, now: float) -> None:
        """Say this holder is alive, and count the live holders (this one included)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._holders, {self.holder: now})
        pipe.zcount(self._holders, now - self.lapse_s, "+inf")
        self.live_holders = max(1, int(pipe.execute()[1]))

    def lapsed(self, now: float) -> list[str]:
        """Holders (other than this one) silent for longer than the lapse."""
        found = self._redis.zrangebyscore(self._holders, "-inf", now - self.lapse_s)
        return [h for h in (_text(v) for v in found) if h != self.holder]

    def unleased(
        self, unacked_index: str, unacked: str, queue: str, older_than: float, now: float
    ) -> list[str]:
        """Delivery tags of ``queue``'s messages taken before ``older_than`` (the broker's
        unacknowledged set) that no live worker holds: taken by a worker that died before its
        lease was written (within ``FLUSH_S`` of taking them). Other queues' messages (long
        housekeeping tasks, other stacks sharing the Redis) are remembered and not read again."""
        old = [_text(t) for t in self._redis.zrangebyscore(unacked_index, "-inf", older_than)]
        old = [tag for tag in old if tag not in self._foreign]
        if not old:
            return []
        held = live_leases(self._redis, self._prefix, now, self.lapse_s)
        orphans = [tag for tag in old if tag not in held]
        if not orphans:
            return []
        found = []
        for tag, raw in zip(orphans, self._redis.hmget(unacked, orphans), strict=True):
            try:
                routing_key = json.loads(raw)[2] if raw else None
            except (ValueError, IndexError, TypeError):
                routing_key = None
            if routing_key == queue:
                found.append(tag)
            elif raw is not None and len(self._foreign) < FOREIGN_TAGS_KEPT:
                self._foreign.add(tag)
        return found

    def reap(self, holder: str, restore: Callable[[str], None]) -> list[str]:
        """Put a dead holder's messages back on the queue with ``restore`` (the broker's own
        restore-by-tag: a message already acknowledged or restored is skipped), then forget
        the holder. Returns the task ids whose messages were handed back. One reaper per holder
        at a time (a lock); a reaper that dies half-way leaves the rest to the next one."""
        lock = f"{lease_key(self._prefix, holder)}:reaping"
        if not self._redis.set(lock, self.holder, nx=True, ex=60):
            return []
        try:
            held = {
                _text(k): _text(v) for k, v in self._redis.hgetall(lease_key(self._prefix, holder)).items()
            }
            for tag in held:
                restore(tag)
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(lease_key(self._prefix, holder))
            pipe.zrem(self._holders, holder)
            pipe.execute()
            return list(held.values())
        finally:
            self._redis.delete(lock)

    def stop(self) -> None:
        """A warm shutdown: the broker gives back what this worker held; forget the leases."""
        with self._lock:
            self._taken.clear()
            self._released.clear()
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key)
        pipe.zrem(self._holders, self.holder)
        pipe.execute()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
