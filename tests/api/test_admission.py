"""Token buckets and backpressure in Redis, driven with explicit times (no sleeping)."""

from __future__ import annotations

import secrets

import redis

from api.admission import Admission, Submission, TierLimits
from batchgate.apikeys import ApiKeyStore, hash_key
from batchgate.tenants import inflight_key, own_tenant


def make(client: redis.Redis, high: int = 1000, low: int = 500, prefix: str = "") -> tuple[Admission, str]:
    prefix = prefix or f"adm-{secrets.token_hex(4)}"
    return Admission(client, prefix, f"{prefix}-queue", high, low, stale_after_s=100.0), f"{prefix}-queue"


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
    limits = {
        "free": TierLimits(1.0, 2, 20),
        "basic": TierLimits(10.0, 5, 200),
        "premium": TierLimits(100.0, 9, 2000),
    }
    free, premium = hash_key(keys.create("free")), hash_key(keys.create("premium", tenant="acme"))

    free_decisions = [admission.admit_key(keys.record_key(free), free, limits, now=1.0) for _ in range(3)]
    assert [d.allowed for d in free_decisions] == [True, True, False]
    assert free_decisions[0].tier == "free" and free_decisions[0].limit == 2 and free_decisions[0].rate == 1.0
    assert free_decisions[0].tenant == own_tenant(free)
    assert free_decisions[2].reason == "rate_limited" and free_decisions[2].retry_after_s == 1

    first = admission.admit_key(keys.record_key(premium), premium, limits, now=1.0)
    assert (first.allowed, first.tier, first.limit, first.remaining) == (True, "premium", 9, 8)
    assert first.tenant == "acme"


def test_an_unknown_or_revoked_key_is_refused_and_spends_nothing(redis_client: redis.Redis) -> None:
    admission, _ = make(redis_client)
    keys = ApiKeyStore(redis_client, f"t{secrets.token_hex(4)}")
    limits = {"free": TierLimits(1.0, 2, 20)}
    key = keys.create("free")
    keys.revoke(key)
    refused = admission.admit_key(keys.record_key(hash_key(key)), "x", limits, now=1.0)
    assert refused.reason == "unknown_key" and not refused.allowed
    assert redis_client.exists(f"{keys.record_key(hash_key(key))}") == 0
    assert not redis_client.keys("*:bucket:key:x")


def test_the_tenants_cache_entry_is_read_in_the_same_round_trip(redis_client: redis.Redis) -> None:
    prefix = f"adm-{secrets.token_hex(4)}"
    admission, _ = make(redis_client, prefix=prefix)
    redis_client.set(f"{prefix}:cache:a:d1", '{"text": "cached"}')
    hit = admission.admit("k", 1.0, 5, 1.0, tenant="a", max_in_flight=9, submission=Submission("t1", "d1"))
    assert hit.allowed and hit.read_value == '{"text": "cached"}' and not hit.reserved
    other = admission.admit("k2", 1.0, 5, 1.0, tenant="b", max_in_flight=9, submission=Submission("t2", "d1"))
    assert other.allowed and other.read_value is None and other.reserved  # b never sees a's entry
    assert admission.admit("k", 1.0, 5, 1.0, tenant="a").read_value is None


def test_a_tenants_tasks_in_flight_are_capped_and_slots_come_back(redis_client: redis.Redis) -> None:
    prefix = f"adm-{secrets.token_hex(4)}"
    admission, _ = make(redis_client, prefix=prefix)

    def submit(tenant: str, task_id: str, now: float = 1.0) -> str:
        decision = admission.admit(
            f"key-{tenant}", 1000.0, 1000, now, tenant=tenant, max_in_flight=3, submission=Submission(task_id)
        )
        return decision.reason

    assert [submit("a", f"t{i}") for i in range(4)] == ["ok", "ok", "ok", "too_many_in_flight"]
    assert submit("b", "u0") == "ok"  # another tenant is not held back by a's flood
    refused = admission.admit(
        "key-a", 1000.0, 1000, 1.0, tenant="a", max_in_flight=3, submission=Submission("t9")
    )
    assert refused.retry_after_s >= 1 and refused.in_flight == 3
    assert refused.remaining == 997  # three admitted spent a token each; refusals spent none
    assert redis_client.hget(admission.counters_key, "rejected_in_flight") == "2"
    admission.release("a", "t1")  # e.g. finished (TaskStore.finish does this in its script)
    assert submit("a", "t4") == "ok"
    admission.move("a", "t4", "t5", now=1.0)
    assert set(redis_client.zrange(inflight_key(prefix, "a"), 0, -1)) == {"t0", "t2", "t5"}
    # An entry older than stale_after_s (100 s here) is dropped: a submission that died half-way.
    assert submit("a", "t6", now=1.0 + 99.0) == "too_many_in_flight"
    assert submit("a", "t6", now=1.0 + 101.0) == "ok"
