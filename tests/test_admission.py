"""Token buckets and backpressure in Redis, driven with explicit times (no sleeping)."""

from __future__ import annotations

import secrets

import redis

from batchgate.admission import Admission
from batchgate.apikeys import ApiKeyStore, hash_key


def make(client: redis.Redis, high: int = 1000, low: int = 500) -> tuple[Admission, str]:
    prefix = f"adm-{secrets.token_hex(4)}"
    return Admission(client, prefix, f"{prefix}-queue", high, low), f"{prefix}-queue"


def test_a_burst_is_admitted_then_refused_with_retry_after(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    decisions = [admission.admit("k", rate=1.0, burst=10, now=100.0) for _ in range(12)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    refused = decisions[10]
    assert refused.reason == "rate_limited" and refused.retry_after_s == 1 and refused.limit == 10
    assert decisions[9].reset_s == 10  # ten tokens short, one a second


def test_tokens_refill_at_the_rate_and_never_beyond_the_burst(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    for _ in range(10):
        admission.admit("k", rate=2.0, burst=10, now=0.0)
    assert not admission.admit("k", rate=2.0, burst=10, now=0.1).allowed
    late = admission.admit("k", rate=2.0, burst=10, now=0.2)  # 0.4 tokens: still short
    assert not late.allowed and late.retry_after_s == 1
    assert admission.admit("k", rate=2.0, burst=10, now=0.5).allowed  # one token after 0.5 s
    assert admission.admit("k", rate=2.0, burst=10, now=1000.0).remaining == 9  # capped at burst


def test_slow_rates_give_whole_second_retry_after(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    assert admission.admit("k", rate=0.25, burst=1, now=0.0).allowed
    assert admission.admit("k", rate=0.25, burst=1, now=0.5).retry_after_s == 4  # 3.5 s, rounded up


def test_buckets_are_per_identity(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    assert admission.admit("a", rate=1.0, burst=1, now=5.0).allowed
    assert not admission.admit("a", rate=1.0, burst=1, now=5.0).allowed
    assert admission.admit("b", rate=1.0, burst=1, now=5.0).allowed


def test_backpressure_has_hysteresis_and_spends_no_tokens(redis_client: redis.Redis) -> None:
    admission, queue = make(redis_client, high=5, low=2)
    redis_client.rpush(queue, *range(4))
    assert admission.admit("k", rate=100.0, burst=100, now=1.0).allowed
    redis_client.rpush(queue, 4)
    refused = admission.admit("k", rate=100.0, burst=100, now=1.0)
    assert refused.reason == "backpressure" and refused.queue_depth == 5 and refused.retry_after_s >= 1
    redis_client.lpop(queue, 2)  # depth 3: between the marks, still refusing
    assert admission.admit("k", rate=100.0, burst=100, now=1.0).reason == "backpressure"
    redis_client.lpop(queue)  # depth 2: at the low mark, admitting again
    again = admission.admit("k", rate=100.0, burst=100, now=1.0)
    assert again.allowed and again.remaining == 98  # only the two admitted requests spent tokens
    counters = redis_client.hgetall(admission.counters_key)
    assert counters["rejected_backpressure"] == "2"


def test_a_keyed_caller_is_looked_up_and_admitted_at_its_tier_in_one_script(
    redis_client: redis.Redis,
) -> None:
    admission, _ = make(redis_client)
    keys = ApiKeyStore(redis_client, f"t{secrets.token_hex(4)}")
    limits = {"free": (1.0, 2), "basic": (10.0, 5), "premium": (100.0, 9)}
    free, premium = hash_key(keys.create("free")), hash_key(keys.create("premium"))

    free_decisions = [
        admission.admit_key(keys.record_key(free), f"key:{free}", limits, now=1.0) for _ in range(3)
    ]
    assert [d.allowed for d in free_decisions] == [True, True, False]
    assert free_decisions[0].tier == "free" and free_decisions[0].limit == 2 and free_decisions[0].rate == 1.0
    assert free_decisions[2].reason == "rate_limited" and free_decisions[2].retry_after_s == 1

    first = admission.admit_key(keys.record_key(premium), f"key:{premium}", limits, now=1.0)
    assert (first.allowed, first.tier, first.limit, first.remaining) == (True, "premium", 9, 8)


def test_an_unknown_or_revoked_key_is_refused_and_spends_nothing(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    keys = ApiKeyStore(redis_client, f"t{secrets.token_hex(4)}")
    limits = {"free": (1.0, 2)}
    key = keys.create("free")
    keys.revoke(key)
    refused = admission.admit_key(keys.record_key(hash_key(key)), "key:x", limits, now=1.0)
    assert refused.reason == "unknown_key" and not refused.allowed
    assert redis_client.exists(f"{keys.record_key(hash_key(key))}") == 0
    assert not redis_client.keys("*:bucket:key:x")


def test_a_key_can_be_read_in_the_same_round_trip(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    redis_client.set("adm-test:cache:entry", '{"text": "cached"}')
    decision = admission.admit("k", rate=1.0, burst=5, now=1.0, read="adm-test:cache:entry")
    assert decision.allowed and decision.read_value == '{"text": "cached"}'
    assert admission.admit("k", rate=1.0, burst=5, now=1.0, read="adm-test:absent").read_value is None
    assert admission.admit("k", rate=1.0, burst=5, now=1.0).read_value is None
