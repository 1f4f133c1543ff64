"""Admission of new work: a token bucket per caller and queue backpressure, in one round trip.

Both live in Redis so that every API replica enforces the same limits. One Lua script reads
the queue's depth (``LLEN``, O(1)), applies the high/low-water hysteresis, then refills and
spends the caller's bucket. Time is passed in (``now``), so tests drive it explicitly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis

from batchgate.metrics_store import SLOT_TTL_S, TOTAL, InferenceMetricsCollector, slot_of

_ADMIT = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local high = tonumber(ARGV[4])
local low = tonumber(ARGV[5])

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

local allowed, reason, retry_ms = 0, 'backpressure', 0
if refusing then
  redis.call('HINCRBY', KEYS[4], 'rejected_backpressure', 1)
  redis.call('HINCRBY', KEYS[5], 'rejected_backpressure', 1)
  redis.call('EXPIRE', KEYS[5], ARGV[6])
elseif tokens >= 1 then
  tokens = tokens - 1
  allowed, reason = 1, 'ok'
else
  reason = 'rate_limited'
  retry_ms = math.ceil((1 - tokens) * 1000 / rate)
  redis.call('HINCRBY', KEYS[4], 'rejected_rate_limit', 1)
  redis.call('HINCRBY', KEYS[5], 'rejected_rate_limit', 1)
  redis.call('EXPIRE', KEYS[5], ARGV[6])
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
local reset_ms = math.ceil((burst - tokens) * 1000 / rate)
return {allowed, reason, math.floor(tokens), retry_ms, depth, reset_ms}
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission, with what the response headers must say."""

    allowed: bool
    #: ``ok``, ``rate_limited`` or ``backpressure``.
    reason: str
    limit: int
    remaining: int
    #: Whole seconds until a request would be admitted (rounded up; 0 when allowed).
    retry_after_s: int
    #: Whole seconds until the bucket is full again.
    reset_s: int
    queue_depth: int


class Admission:
    """Decides whether a caller may submit now."""

    def __init__(self, client: redis.Redis, prefix: str, queue: str, high_water: int, low_water: int) -> None:
        self._script = client.register_script(_ADMIT)
        self._prefix = prefix
        self._metrics = InferenceMetricsCollector(client, prefix)
        self._queue = queue
        self._high = high_water
        self._low = low_water
        self.backpressure_retry_after_s = 1

    @property
    def counters_key(self) -> str:
        """The metrics' total counters, where rejections are counted too."""
        return self._metrics.counters_key(TOTAL)

    def admit(self, identity: str, rate: float, burst: int, now: float | None = None) -> Decision:
        """Spend one token of ``identity``'s bucket unless the queue is over its high-water mark."""
        now_s = time.time() if now is None else now
        keys = [
            f"{self._prefix}:bucket:{identity}",
            self._queue,
            f"{self._prefix}:backpressure",
            self.counters_key,
            self._metrics.counters_key(slot_of(now_s)),
        ]
        allowed, reason, remaining, retry_ms, depth, reset_ms = self._script(
            keys=keys, args=[repr(now_s * 1000), repr(float(rate)), burst, self._high, self._low, SLOT_TTL_S]
        )
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        retry_after = math.ceil(int(retry_ms) / 1000) if reason == "rate_limited" else 0
        if reason == "backpressure":
            retry_after = self.backpressure_retry_after_s
        return Decision(
            allowed=bool(allowed),
            reason=reason,
            limit=burst,
            remaining=int(remaining),
            retry_after_s=retry_after,
            reset_s=math.ceil(int(reset_ms) / 1000),
            queue_depth=int(depth),
        )
