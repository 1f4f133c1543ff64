"""One set of Gemini quotas for the whole cluster's model calls, shared through Redis.

Gemini's quotas are per project and model, not per worker: N worker processes each pacing
themselves to ``quota / N`` waste a dead worker's share and must be re-divided at every
scale-out. Here every worker takes its call's turn from one schedule per model in Redis, in
one atomic script:

- RPM and TPM are GCRA schedules (the token bucket kept as one number: the theoretical
  arrival time of the next unit). A call's start is the earliest both allow; it takes one
  turn from RPM and its estimated input tokens from TPM, and ``settle`` corrects the tokens
  by Gemini's ``usageMetadata``. A turn is handed out even when it lies in the future, so a
  burst of calls waits in order instead of meeting 429s. Each bucket holds one second's
  worth; the steady rates are lowered so that no 60 s holds more than the quota (less
  ``SKEW_MARGIN`` for the clocks of Redis and the model's front end).
- RPD is a count per Pacific day (Gemini's day quotas reset at midnight Pacific). A call
  beyond it, or to a model that Gemini refused for the day (``pause``, seen by one worker,
  obeyed by all), is not made: ``reserve`` raises ``model_daily_quota_exhausted``.

Redis's own clock (``TIME``) times every worker alike. If Redis cannot answer, the worker
paces itself to the whole per-minute quotas (a lone worker's share) and asks Redis again only
``RETRY_S`` later, so an outage never costs a connection timeout per call.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import redis

from batchgate.keys import model_quota
from batching.call_pacer import CallPacer
from batching.daily_quota import day_quota_spent, pacific_day, seconds_to_pacific_midnight
from batching.quota import ModelQuota, QuotaTable

log = logging.getLogger(__name__)

#: Share of the quota left unused, so calls timed by Redis's clock arrive under the quota by
#: the model's (measured against the simulator's sliding minute: a full bucket and turns
#: spaced at ``60 / rpm`` met 7 429s in 294 calls of 2 workers at 300 RPM).
SKEW_MARGIN = 0.01
#: After Redis failed to answer, how long the worker paces itself before asking it again.
RETRY_S = 5.0
#: How far (seconds) the TPM schedule may run ahead of the steady rate: one second's tokens.
TPM_TOLERANCE_S = 1.0

# KEYS: 1 RPM schedule, 2 TPM schedule, 3 today's call count, 4 the model's pause.
# ARGV: 1 seconds per call, 2 RPM tolerance (s), 3 seconds per token, 4 TPM tolerance (s),
# 5 the call's tokens, 6 RPD (0: none), 7 seconds to the day's reset.
# Returns {'wait', seconds} or {'day', seconds until the quota is back} (strings: Lua numbers
# come back as integers).
_TAKE_TURN = """
local paused = redis.call('PTTL', KEYS[4])
if paused > 0 then return {'day', string.format('%.3f', paused / 1000)} end
local rpd = tonumber(ARGV[6])
if rpd > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= rpd then return {'day', ARGV[7]} end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local per_call, per_token = tonumber(ARGV[1]), tonumber(ARGV[3])
local start, calls_tat, tokens_tat = now, 0, 0
if per_call > 0 then
  calls_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  start = math.max(start, calls_tat - tonumber(ARGV[2]))
end
if per_token > 0 then
  tokens_tat = tonumber(redis.call('GET', KEYS[2]) or '0')
  start = math.max(start, tokens_tat - tonumber(ARGV[4]))
end
local function keep(key, tat)
  redis.call('SET', key, string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 60000)
end
if per_call > 0 then keep(KEYS[1], math.max(calls_tat, start) + per_call) end
if per_token > 0 then keep(KEYS[2], math.max(tokens_tat, start) + tonumber(ARGV[5]) * per_token) end
if rpd > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[7])) + 3600)
end
return {'wait', string.format('%.6f', start - now)}
"""

# KEYS[1] a TPM schedule; ARGV[1] seconds to move it by (negative: tokens given back).
_SETTLE = """
local tat = redis.call('GET', KEYS[1])
if not tat then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], string.format('%.6f', tonumber(tat) + tonumber(ARGV[1])), 'PX', math.max(ttl, 1000))
return 1
"""


class ClusterPacer:
    """Turns for the cluster's model calls within every model's quotas (none set: no pacing)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        quotas: QuotaTable | int,
        largest_call_tokens: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.quotas = quotas if isinstance(quotas, QuotaTable) else QuotaTable(ModelQuota(rpm=quotas))
        self._prefix = prefix
        self._largest_call_tokens = largest_call_tokens
        self._wall = wall
        self._take_turn = client.register_script(_TAKE_TURN)
        self._settle = client.register_script(_SETTLE)
        self._pause = client.register_script("return redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])")
        #: Paces this worker alone, per model, while Redis does not answer.
        self._fallback: dict[str, CallPacer] = {}
        #: ``time.monotonic()`` before which Redis is not asked again (after a failure).
        self._alone_until = 0.0
        #: Model -> when (``reserve``'s clock) the last turn this worker took for it starts.
        self._turns: dict[str, float] = {}
        self._next_turn_at = -math.inf
        #: Turns taken, and of them waited for (read by the slot tuner from other threads).
        self.turns_taken = self.turns_waited = 0

    @property
    def next_turn_at(self) -> float:
        """When the next call could start, as far as this worker knows: the earliest of its
        models' last turns (a model with no queue lets a call start now). Read from other
        threads: kept as one float, written whole."""
        return self._next_turn_at

    @staticmethod
    def burst_of(quota: ModelQuota) -> float:
        """Calls that may start at once after a quiet spell: one second's worth, at least one."""
        return max(1.0, quota.rpm / 60)

    def seconds_per_call(self, quota: ModelQuota) -> float:
        """Seconds between RPM turns. Gemini counts a minute's requests over any 60 s: a bucket
        that starts full would fit ``burst - 1`` calls more than ``rpm`` in the minute of a
        burst, so the steady rate pays them back, less ``SKEW_MARGIN``."""
        if not quota.rpm:
            return 0.0
        return 60 / ((quota.rpm - self.burst_of(quota) + 1) * (1 - SKEW_MARGIN))

    def seconds_per_token(self, quota: ModelQuota) -> float:
        """Seconds of TPM schedule per input token: any 60 s may hold the tokens of 61 s at the
        steady rate plus one call's, so the rate leaves room for the largest call (at most
        half the quota) besides ``SKEW_MARGIN``."""
        if not quota.tpm:
            return 0.0
        room = quota.tpm - min(self._largest_call_tokens, quota.tpm // 2)
        return (60 + TPM_TOLERANCE_S) / (room * (1 - SKEW_MARGIN))

    def reserve(self, now: float, model: str = "", tokens: int = 0) -> float:
        """Take the next call's turn; return how long it must wait first (``now`` is only used
        by the fallback: the shared schedule runs on Redis's clock). Raises
        ``ModelCallError`` when the model's day quota is spent."""
        quota = self.quotas.of(model)
        if not quota.any:
            return self._turn(model, now, 0.0)
        if self._alone_until and time.monotonic() < self._alone_until:
            return self._turn(model, now, self._alone(model, quota).reserve(now, model, tokens))
        wall = self._wall()
        per_call = self.seconds_per_call(quota)
        try:
            kind, value = self._take_turn(
                keys=[
                    model_quota(self._prefix, model, "rpm"),
                    model_quota(self._prefix, model, "tpm"),
                    model_quota(self._prefix, model, "rpd:" + pacific_day(wall)),
                    model_quota(self._prefix, model, "paused"),
                ],
                args=[
                    per_call,
                    (self.burst_of(quota) - 1) * per_call,
                    self.seconds_per_token(quota),
                    TPM_TOLERANCE_S,
                    tokens,
                    quota.rpd,
                    seconds_to_pacific_midnight(wall),
                ],
            )
        except redis.RedisError as exc:
            if not self._alone_until:
                log.warning("the shared call quota is unreachable (%s): pacing this worker alone", exc)
            self._alone_until = time.monotonic() + RETRY_S
            return self._turn(model, now, self._alone(model, quota).reserve(now, model, tokens))
        if self._alone_until:
            log.info("the shared call quota answers again")
            self._alone_until = 0.0
        if _text(kind) == "day":
            raise day_quota_spent(model, float(value), f"{quota.rpd} requests per day")
        return self._turn(model, now, float(value))

    def _turn(self, model: str, now: float, wait: float) -> float:
        self._turns[model] = max(self._turns.get(model, -math.inf), now + wait)
        self._next_turn_at = min(self._turns.values())
        self.turns_taken += 1
        self.turns_waited += wait > 0
        return wait

    def settle(self, model: str, reserved: int, used: int) -> None:
        """Move the model's TPM schedule by the tokens Gemini counted beyond (or short of) the
        estimate taken at ``reserve``."""
        quota = self.quotas.of(model)
        if not quota.tpm or used == reserved:
            return
        if self._alone_until:
            self._alone(model, quota).settle(model, reserved, used)
            return
        shift = (used - reserved) * self.seconds_per_token(quota)
        try:
            self._settle(keys=[model_quota(self._prefix, model, "tpm")], args=[shift])
        except redis.RedisError as exc:
            log.warning("could not correct the shared TPM schedule (%s)", exc)

    def pause(self, model: str, seconds: float) -> None:
        """Gemini refused ``model`` for the day: every worker leaves it alone for ``seconds``."""
        try:
            self._pause(
                keys=[model_quota(self._prefix, model, "paused")], args=[max(1, math.ceil(seconds * 1000))]
            )
        except redis.RedisError as exc:
            log.warning("could not share the pause of %s (%s): this worker pauses alone", model, exc)

    def _alone(self, model: str, quota: ModelQuota) -> CallPacer:
        if model not in self._fallback:
            self._fallback[model] = CallPacer(quota.rpm, quota.tpm)
        return self._fallback[model]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
