"""Admission of new work: a token bucket per caller and queue backpressure, in one round trip.

Both live in Redis so that every API replica enforces the same limits. One Lua script reads
the queue's depth (``LLEN``, O(1)), applies the high/low-water hysteresis, then refills and
spends the caller's bucket. For a keyed caller the same script first reads the key's tier
from its stored hash (``admit_key``), so a submission costs one round trip for
authentication and admission together. Time is passed in (``now``), so tests drive it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from batchgate.metrics_store import SLOT_TTL_S, TOTAL, InferenceMetricsCollector, slot_of

_ADMIT = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local high = tonumber(ARGV[4])
local low = tonumber(ARGV[5])

-- A keyed caller: its tier (from the stored key) picks the rate and burst among the
-- (tier, rate, burst) triples from ARGV[7]; an unknown key is refused and spends nothing.
local tier = ''
if KEYS[6] then
  tier = redis.call('HGET', KEYS[6], 'tier')
  if not tier then
    if redis.call('EXISTS', KEYS[6]) == 0 then
      return {0, 'unknown_key', 0, 0, 0, 0, '', 0, '0'}
    end
    tier = 'free'
  end
  local i = 7
  while ARGV[i] do
    if ARGV[i] == tier then
      rate = tonumber(ARGV[i + 1])
      burst = tonumber(ARGV[i + 2])
    end
    i = i + 3
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
return {allowed, reason, math.floor(tokens), retry_ms, depth, reset_ms, tier, burst, tostring(rate)}
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission, with what the response headers must say."""

    allowed: bool
    #: ``ok``, ``rate_limited``, ``backpressure`` or (``admit_key`` only) ``unknown_key``.
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
    #: The value of the key asked for with ``read`` (fetched in the same round trip).
    read_value: str | None = None


class Admission:
    """Decides whether a caller may submit now."""

    def __init__(self, client: redis.Redis, prefix: str, queue: str, high_water: int, low_water: int) -> None:
        self._client = client
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

    def admit(
        self, identity: str, rate: float, burst: int, now: float | None = None, read: str | None = None
    ) -> Decision:
        """Spend one token of ``identity``'s bucket unless the queue is over its high-water mark
        (``read``: as for ``admit_key``)."""
        return self._run(identity, [repr(float(rate)), burst], [], now, read=read)

    def admit_key(
        self,
        key_record: str,
        identity: str,
        tier_limits: Mapping[str, tuple[float, int]],
        now: float | None = None,
        read: str | None = None,
    ) -> Decision:
        """Like ``admit`` for the API key stored at ``key_record``, at its tier's rate and burst.

        An unknown (or revoked) key gives reason ``unknown_key`` and spends nothing. ``read``:
        a string key to ``GET`` in the same round trip (``Decision.read_value``), e.g. the
        response cache's entry, so a submission needs no extra round trip to look it up.
        """
        triples = [
            str(v) for tier, (rate, burst) in tier_limits.items() for v in (tier, repr(float(rate)), burst)
        ]
        rate, burst = min(tier_limits.values())  # a tier the settings do not know: the lowest
        return self._run(identity, [repr(float(rate)), burst], triples, now, key_record, read)

    def _run(
        self,
        identity: str,
        limits: list[Any],
        triples: list[str],
        now: float | None,
        key_record: str = "",
        read: str | None = None,
    ) -> Decision:
        now_s = time.time() if now is None else now
        keys = [
            f"{self._prefix}:bucket:{identity}",
            self._queue,
            f"{self._prefix}:backpressure",
            self.counters_key,
            self._metrics.counters_key(slot_of(now_s)),
        ]
        if key_record:
            keys.append(key_record)
        args = [repr(now_s * 1000), *limits, self._high, self._low, SLOT_TTL_S, *triples]
        read_value = None
        if read is None:
            reply = self._script(keys=keys, args=args)
        else:
            pipe = self._client.pipeline(transaction=False)
            self._script(keys=keys, args=args, client=pipe)
            pipe.get(read)
            reply, raw = pipe.execute()
            read_value = None if raw is None else _text(raw)
        allowed, reason, remaining, retry_ms, depth, reset_ms, tier, burst, rate = reply
        reason = _text(reason)
        retry_after = math.ceil(int(retry_ms) / 1000) if reason == "rate_limited" else 0
        if reason == "backpressure":
            retry_after = self.backpressure_retry_after_s
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
            read_value=read_value,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
