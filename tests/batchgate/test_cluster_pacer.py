"""One RPM quota for every worker process: turns taken from one schedule in a real Redis."""

from __future__ import annotations

import math
import secrets
import time
from datetime import datetime
from typing import Any

import pytest
import redis

from batchgate.cluster_pacer import ClusterPacer
from batching.daily_quota import DAILY_QUOTA_EXHAUSTED, PACIFIC
from batching.quota import ModelQuota, QuotaTable
from batching.types import ModelCallError
from stack.ports import free_port

#: 600 calls a minute: one every 0.1 s, ten at once after a quiet spell.
RPM = 600
MODEL = "gemini-2.5-flash"


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


def _pacers(redis_client: redis.Redis, n: int, quotas: QuotaTable, **kwargs: Any) -> list[ClusterPacer]:
    prefix = f"p{secrets.token_hex(3)}"
    return [ClusterPacer(redis_client, prefix, quotas, **kwargs) for _ in range(n)]


def test_workers_share_one_tpm_quota_and_gemini_counts_correct_it(redis_client: redis.Redis) -> None:
    a, b = _pacers(redis_client, 2, QuotaTable(ModelQuota(tpm=60_000)))  # ~1,000 tokens a second
    per_token = a.seconds_per_token(a.quotas.default)
    assert per_token == pytest.approx(61 / (60_000 * 0.99))
    first = time.monotonic()
    starts = [time.monotonic() - first + p.reserve(0.0, MODEL, 500) for p in (a, b) * 5]
    # Two calls at once (a second's worth of tokens), then one every 500 tokens, across both.
    assert starts[1] < 0.1 and starts[-1] == pytest.approx(9 * 500 * per_token - 1.0, abs=0.15)
    a.settle(MODEL, 500, 5_500)  # Gemini counted 5,000 tokens more than estimated
    later = time.monotonic() - first + b.reserve(0.0, MODEL, 1)
    assert later == pytest.approx((5_000 + 5_000) * per_token - 1.0, abs=0.15)


def test_the_day_quota_counts_every_workers_calls_until_midnight_pacific(redis_client: redis.Redis) -> None:
    morning = datetime(2026, 12, 3, 10, 0, tzinfo=PACIFIC).timestamp()
    clock = [morning]
    a, b = _pacers(redis_client, 2, QuotaTable(ModelQuota(rpd=3)), wall=lambda: clock[0])
    assert [a.reserve(0.0, MODEL), b.reserve(0.0, MODEL), a.reserve(0.0, MODEL)] == [0.0] * 3
    with pytest.raises(ModelCallError) as refused:
        b.reserve(0.0, MODEL)
    assert refused.value.code == DAILY_QUOTA_EXHAUSTED and not refused.value.retryable
    assert refused.value.retry_after_s == pytest.approx(14 * 3600)  # 10:00 to midnight
    clock[0] = morning + 86_400  # the next Pacific day counts afresh
    assert b.reserve(0.0, MODEL) == 0.0


def test_a_day_refusal_seen_by_one_worker_pauses_that_model_for_all(redis_client: redis.Redis) -> None:
    table = QuotaTable(ModelQuota(rpm=6000), {"other": ModelQuota(rpm=6000)})
    a, b = _pacers(redis_client, 2, table)
    a.pause(MODEL, 30.0)  # Gemini refused MODEL for the day, retryDelay 30 s
    with pytest.raises(ModelCallError) as refused:
        b.reserve(0.0, MODEL)
    assert refused.value.code == DAILY_QUOTA_EXHAUSTED
    assert 29.0 <= (refused.value.retry_after_s or 0) <= 30.0
    assert b.reserve(0.0, "other") == 0.0  # another model's quota is its own


def test_each_model_keeps_its_own_schedule(redis_client: redis.Redis) -> None:
    table = QuotaTable(ModelQuota(), {"slow": ModelQuota(rpm=60)})  # one call a second
    (pacer,) = _pacers(redis_client, 1, table)
    assert [pacer.reserve(0.0, MODEL) for _ in range(50)] == [0.0] * 50  # unpaced default
    waits = [pacer.reserve(0.0, "slow") for _ in range(3)]
    assert waits[0] == 0.0 and 0.9 < waits[1] < 1.1 and 1.9 < waits[2] < 2.2


def test_a_worker_knows_when_its_next_call_could_start(redis_client: redis.Redis) -> None:
    table = QuotaTable(ModelQuota(), {"slow": ModelQuota(rpm=60)})
    (pacer,) = _pacers(redis_client, 1, table)
    assert pacer.next_turn_at == -math.inf  # no call yet
    waits = [pacer.reserve(100.0, "slow") for _ in range(3)]
    assert pacer.next_turn_at == pytest.approx(100.0 + waits[-1])  # calls queue for turns
    pacer.reserve(100.0, MODEL)  # another model, unpaced: a call of it could start now
    assert pacer.next_turn_at == 100.0
