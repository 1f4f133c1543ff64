"""Admission of new work: a token bucket per caller, a cap on each tenant's tasks in flight,
and queue backpressure, in one round trip.

All live in Redis so that every API replica enforces the same limits. One Lua script reads
the queue's depth (``LLEN``, O(1)), applies the high/low-water hysteresis, refills the
caller's bucket, looks up the tenant's cache entry for the request, and counts the tenant's
unfinished tasks (a sorted set of task ids: entered here, left when the task finishes,
``batchgate.taskstore``; entries older than ``stale_after_s`` are dropped, so a submission
that died half-way cannot hold a slot for ever). For a keyed caller the same script first
reads the key's tier and tenant from its stored hash (``admit_key``), so a submission costs
one round trip for authentication, admission and the cache lookup together. Time is passed
in (``now``), so tests drive it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from baseline.slots import slot_of
from batchgate import keys as key_names
from batchgate.metrics_store import SLOT_TTL_S, TOTAL, InferenceMetricsCollector
from batchgate.tenants import inflight_key, inflight_prefix, own_tenant

# The tenant's cache entry and in-flight set are named inside the script (the tenant is only
# known once the key is read), so they are not in KEYS: fine on a single Redis (batchgate's
# deployments), not on Redis Cluster.
_ADMIT = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local high = tonumber(ARGV[4])
local low = tonumber(ARGV[5])
local tenant = ARGV[7]
local max_in_flight = tonumber(ARGV[8])
local task_id = ARGV[9]
local digest = ARGV[10]

-- A keyed caller: its tier and tenant come from the stored key; the tier picks the rate,
-- burst and in-flight limit among the (tier, rate, burst, max in flight) quads from
-- ARGV[14]. An unknown key is refused and spends nothing.
local tier = ''
if KEYS[6] then
  local found = redis.call('HMGET', KEYS[6], 'tier', 'tenant')
  tier = found[1]
  if not tier then
    if redis.call('EXISTS', KEYS[6]) == 0 then
      return {0, 'unknown_key', 0, 0, 0, 0, '', 0, '0', '', '', 0, 0}
    end
    tier = 'free'
  end
  if found[2] then
    tenant = found[2]
  end
  local i = 14
  while ARGV[i] do
    if ARGV[i] == tier then
      rate = tonumber(ARGV[i + 1])
      burst = tonumber(ARGV[i + 2])
      max_in_flight = tonumber(ARGV[i + 3])
    end
    i = i + 4
  end
end

local depth = redis.call('LLEN', KEYS[2])
local refusing = redis.call('EXISTS', KEYS[3]) == 1
if refusing and depth <= low then
  redis.call('DEL', KEYS[3])
  refusing = false
elseif (not refusing) and depth >= high then
  redis.call('SET', KEYS[3], '1')
  refusing = true
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end

-- The tenant's cache entry for this request, if any: an answer from the cache takes no
-- in-flight slot.
local cached = ''
if digest ~= '' then
  cached = redis.call('GET', ARGV[11] .. tenant .. ':' .. digest) or ''
end
local inflight = ARGV[12] .. tenant
local in_flight = 0
local reserving = task_id ~= '' and cached == ''
if reserving then
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', ARGV[13])
  in_flight = redis.call('ZCARD', inflight)
end

local allowed, reason, retry_ms = 0, 'backpressure', 0
if refusing then
  redis.call('HINCRBY', KEYS[4], 'rejected_backpressure', 1)
  redis.call('HINCRBY', KEYS[5], 'rejected_backpressure', 1)
  redis.call('EXPIRE', KEYS[5], ARGV[6])
elseif tokens < 1 then
  reason = 'rate_limited'
  retry_ms = math.ceil((1 - tokens) * 1000 / rate)
  redis.call('HINCRBY', KEYS[4], 'rejected_rate_limit', 1)
  redis.call('HINCRBY', KEYS[5], 'rejected_rate_limit', 1)
  redis.call('EXPIRE', KEYS[5], ARGV[6])
elseif reserving and in_flight >= max_in_flight then
  reason = 'too_many_in_flight'
  redis.call('HINCRBY', KEYS[4], 'rejected_in_flight', 1)
  redis.call('HINCRBY', KEYS[5], 'rejected_in_flight', 1)
  redis.call('EXPIRE', KEYS[5], ARGV[6])
else
  tokens = tokens - 1
  allowed, reason = 1, 'ok'
  if reserving then
    redis.call('ZADD', inflight, now, task_id)
    redis.call('PEXPIRE', inflight, math.ceil(now - tonumber(ARGV[13])))
    in_flight = in_flight + 1
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
local reset_ms = math.ceil((burst - tokens) * 1000 / rate)
return {allowed, reason, math.floor(tokens), retry_ms, depth, reset_ms, tier, burst, tostring(rate),
        tenant, cached, in_flight, max_in_flight}
"""

#: Retry-After for ``too_many_in_flight``: a slot frees when one of the tenant's tasks finishes.
IN_FLIGHT_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class TierLimits:
    """What a key of one tier may do: submissions per second, burst, and its tenant's tasks in flight."""

    rate: float
    burst: int
    max_in_flight: int


@dataclass(frozen=True)
class Submission:
    """What a submission asks of admission besides a token.

    ``task_id``: the id its task will have, entered in the tenant's in-flight set when admitted
    (unless answered from the cache). ``cache_digest``: the answer fingerprint
    (``batchgate.response_cache.cache_key``) to look up in the tenant's cache.
    """

    task_id: str = ""
    cache_digest: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission, with what the response headers must say."""

    allowed: bool
    #: ``ok``, ``rate_limited``, ``backpressure``, ``too_many_in_flight`` or (``admit_key``
    #: only) ``unknown_key``.
    reason: str
    limit: int
    remaining: int
    #: Whole seconds until a request would be admitted (rounded up; 0 when allowed).
    retry_after_s: int
    #: Whole seconds until the bucket is full again.
    reset_s: int
    queue_depth: int
    #: The keyed caller's tier (``admit_key``), else empty.
    tier: str = ""
    #: Refill rate of the bucket used, tokens per second.
    rate: float = 0.0
    #: The caller's tenant (from the stored key for ``admit_key``).
    tenant: str = ""
    #: The tenant's cache entry for ``Submission.cache_digest`` (read in the same round trip).
    read_value: str | None = None
    #: The tenant's tasks in flight (this one included when it was reserved) and their limit.
    in_flight: int = 0
    max_in_flight: int = 0
    #: True when ``Submission.task_id`` took a slot in the tenant's in-flight set.
    reserved: bool = False


class Admission:
    """Decides whether a caller may submit now."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        queue: str,
        high_water: int,
        low_water: int,
        stale_after_s: float = 3600.0,
        backpressure_retry_after_s: int = 1,
    ) -> None:
        self._client = client
        self._script = client.register_script(_ADMIT)
        self._prefix = prefix
        self._metrics = InferenceMetricsCollector(client, prefix)
        self._queue = queue
        self._high = high_water
        self._low = low_water
        self._stale_after_s = stale_after_s
        self._backpressure_retry_after_s = backpressure_retry_after_s

    @property
    def counters_key(self) -> str:
        """The metrics' total counters, where rejections are counted too."""
        return self._metrics.counters_key(TOTAL)

    def admit(
        self,
        identity: str,
        rate: float,
        burst: int,
        now: float | None = None,
        *,
        tenant: str = "",
        max_in_flight: int = 0,
        submission: Submission | None = None,
    ) -> Decision:
        """Spend one token of ``identity``'s bucket unless the queue is over its high-water mark;
        with a ``submission``, also look up the cache and take a slot of ``tenant``'s
        ``max_in_flight`` (``too_many_in_flight`` when none is free)."""
        limits = [repr(float(rate)), burst]
        return self._run(identity, limits, tenant, max_in_flight, [], now, submission or Submission())

    def admit_key(
        self,
        key_record: str,
        key_hash: str,
        tier_limits: Mapping[str, TierLimits],
        now: float | None = None,
        submission: Submission | None = None,
    ) -> Decision:
        """Like ``admit`` for the API key stored at ``key_record``, at its tier's limits and in
        its tenant (read from the key in the same script).

        An unknown (or revoked) key gives reason ``unknown_key`` and spends nothing.
        """
        quads = [
            str(v)
            for tier, limits in tier_limits.items()
            for v in (tier, repr(float(limits.rate)), limits.burst, limits.max_in_flight)
        ]
        lowest = min(tier_limits.values(), key=lambda t: (t.rate, t.burst))  # a tier the settings lack
        limits = [repr(float(lowest.rate)), lowest.burst]
        return self._run(
            f"key:{key_hash}",
            limits,
            own_tenant(key_hash),
            lowest.max_in_flight,
            quads,
            now,
            submission or Submission(),
            key_record,
        )

    def release(self, tenant: str, task_id: str) -> None:
        """Give back an in-flight slot taken for a task that will not run (e.g. a retry that
        found its original)."""
        self._client.zrem(inflight_key(self._prefix, tenant), task_id)

    def move(self, tenant: str, task_id: str, new_id: str, now: float | None = None) -> None:
        """Hand a slot over to another task id (a retry doing the work of an attempt that died)."""
        key = inflight_key(self._prefix, tenant)
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(key, task_id)
        pipe.zadd(key, {new_id: (time.time() if now is None else now) * 1000})
        pipe.execute()

    def _run(
        self,
        identity: str,
        limits: list[Any],
        tenant: str,
        max_in_flight: int,
        quads: list[str],
        now: float | None,
        submission: Submission,
        key_record: str = "",
    ) -> Decision:
        now_s = time.time() if now is None else now
        keys = [
            key_names.bucket(self._prefix, identity),
            self._queue,
            key_names.backpressure(self._prefix),
            self.counters_key,
            self._metrics.counters_key(slot_of(now_s)),
        ]
        if key_record:
            keys.append(key_record)
        args = [
            repr(now_s * 1000),
            *limits,
            self._high,
            self._low,
            SLOT_TTL_S,
            tenant,
            max_in_flight,
            submission.task_id,
            submission.cache_digest or "",
            key_names.cache_prefix(self._prefix),
            inflight_prefix(self._prefix),
            repr((now_s - self._stale_after_s) * 1000),
            *quads,
        ]
        reply = self._script(keys=keys, args=args)
        allowed, reason, remaining, retry_ms, depth, reset_ms, tier, burst, rate = reply[:9]
        tenant_of, cached, in_flight, max_of = reply[9:13]
        reason = _text(reason)
        retry_after = math.ceil(int(retry_ms) / 1000) if reason == "rate_limited" else 0
        if reason == "backpressure":
            retry_after = self._backpressure_retry_after_s
        elif reason == "too_many_in_flight":
            retry_after = IN_FLIGHT_RETRY_AFTER_S
        read_value = _text(cached) or None
        return Decision(
            allowed=bool(allowed),
            reason=reason,
            limit=int(burst),
            remaining=int(remaining),
            retry_after_s=retry_after,
            reset_s=math.ceil(int(reset_ms) / 1000),
            queue_depth=int(depth),
            tier=_text(tier),
            rate=float(_text(rate)),
            tenant=_text(tenant_of),
            read_value=read_value,
            in_flight=int(in_flight),
            max_in_flight=int(max_of),
            reserved=bool(allowed) and bool(submission.task_id) and read_value is None,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
