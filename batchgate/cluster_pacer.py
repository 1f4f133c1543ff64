"""One requests-per-minute quota for the whole cluster's model calls, shared through Redis.

Gemini's quota is per project, not per worker: N worker processes each pacing themselves to
``rpm / N`` waste a dead worker's share and must be re-divided at every scale-out. Here every
worker takes its call's turn from one schedule in Redis (GCRA, the token bucket kept as one
number: the theoretical arrival time of the next call). A turn is handed out even when it lies
in the future, so a burst of calls waits in order instead of meeting 429s; the bucket holds
one second's worth of calls (at least one), as ``batching.call_pacer.CallPacer`` does, and
the steady rate is lowered so that no 60 s holds more than ``rpm`` calls. Redis's
own clock (``TIME``) times every worker alike. If Redis cannot answer, the worker paces itself
to the whole quota (a lone worker's share) and asks Redis again only ``RETRY_S`` later, so an
outage never costs a connection timeout per call.
"""

from __future__ import annotations

import logging
import time

import redis

from batchgate.keys import model_call_turns
from batching.call_pacer import CallPacer

log = logging.getLogger(__name__)

#: Share of the quota left unused, so calls timed by Redis's clock arrive under the quota by
#: the model's (measured against the simulator's sliding minute: a full bucket and turns
#: spaced at ``60 / rpm`` met 7 429s in 294 calls of 2 workers at 300 RPM).
SKEW_MARGIN = 0.01
#: After Redis failed to answer, how long the worker paces itself before asking it again.
RETRY_S = 5.0

# KEYS[1] the schedule; ARGV[1] seconds between calls, ARGV[2] burst (calls). Returns the
# seconds the caller waits before its call (as a string: Lua numbers come back as integers).
_TAKE_TURN = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 60000)
local wait = tat - now - burst * interval
if wait < 0 then wait = 0 end
return string.format('%.6f', wait)
"""


class ClusterPacer:
    """Turns for the cluster's model calls at no more than ``rpm`` per minute (0: no pacing)."""

    def __init__(self, client: redis.Redis, prefix: str, rpm: int) -> None:
        self.rpm = rpm
        self._key = model_call_turns(prefix)
        self._take_turn = client.register_script(_TAKE_TURN)
        #: Paces this worker alone while Redis does not answer.
        self._fallback = CallPacer(rpm)
        #: ``time.monotonic()`` before which Redis is not asked again (after a failure).
        self._alone_until = 0.0

    @property
    def burst(self) -> float:
        return self._fallback.burst

    @property
    def interval_s(self) -> float:
        """Seconds between turns. Gemini counts a minute's requests over any 60 s: a bucket
        that starts full would fit ``burst - 1`` calls more than ``rpm`` in the minute of a
        burst, so the steady rate pays them back, less ``SKEW_MARGIN`` for the clocks of
        Redis and the model's front end, which are not one."""
        return 60 / ((self.rpm - self.burst + 1) * (1 - SKEW_MARGIN))

    def reserve(self, now: float) -> float:
        """Take the next call's turn; return how long it must wait first (``now`` is only used
        by the fallback: the shared schedule runs on Redis's clock)."""
        if self.rpm == 0:
            return 0.0
        if self._alone_until and time.monotonic() < self._alone_until:
            return self._fallback.reserve(now)
        try:
            wait = float(self._take_turn(keys=[self._key], args=[self.interval_s, self.burst]))
        except redis.RedisError as exc:
            if not self._alone_until:
                log.warning("the shared call quota is unreachable (%s): pacing this worker alone", exc)
            self._alone_until = time.monotonic() + RETRY_S
            return self._fallback.reserve(now)
        if self._alone_until:
            log.info("the shared call quota answers again")
            self._alone_until = 0.0
        return wait
