"""One RPM quota for every worker process: turns taken from one schedule in a real Redis."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from batchgate.cluster_pacer import ClusterPacer
from stack.ports import free_port

#: 600 calls a minute: one every 0.1 s, ten at once after a quiet spell.
RPM = 600


def _starts(pacers: list[ClusterPacer], turns: int) -> list[float]:
    """When each of ``turns`` calls, taken round-robin from ``pacers`` as fast as they can ask,
    may start, in seconds from the first request."""
    first = time.monotonic()
    starts = []
    for n in range(turns):
        asked = time.monotonic() - first
        starts.append(asked + pacers[n % len(pacers)].reserve(asked))
    return starts


def test_workers_share_one_quota_and_a_lone_worker_may_use_all_of_it(redis_client: redis.Redis) -> None:
    prefix = f"p{secrets.token_hex(3)}"
    workers = [ClusterPacer(redis_client, prefix, RPM) for _ in range(3)]
    together = _starts(workers, 30)
    # Ten at once, then one every 0.1 s across all three: 30 calls take 2 s, where three
    # workers pacing themselves to the whole quota each would start all 30 within 1 s.
    assert all(start >= (n + 1 - 10) * 0.1 - 0.02 for n, start in enumerate(together))
    assert 1.95 <= together[-1] <= 2.3
    time.sleep(together[-1] + 1.0)  # the schedule catches up and the bucket refills
    alone = _starts(workers[:1], 30)
    assert 1.95 <= alone[-1] <= 2.3  # the whole rate, not a third of it


def test_without_a_quota_no_call_waits_and_redis_is_not_asked() -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    pacer = ClusterPacer(unreachable, "p", 0)
    assert [pacer.reserve(float(n)) for n in range(100)] == [0.0] * 100


def test_a_worker_that_cannot_reach_redis_paces_itself() -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=None)
    pacer = ClusterPacer(unreachable, "p", RPM)
    started = time.monotonic()
    waits = [pacer.reserve(0.0) for _ in range(12)]
    assert time.monotonic() - started < 2.0  # one failed attempt, not one per call
    assert waits[:10] == [0.0] * 10 and waits[10:] == [pytest.approx(0.1), pytest.approx(0.2)]
