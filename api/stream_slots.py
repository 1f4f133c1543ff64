"""A metrics stream's place among the few one API key may hold open, across every replica.

Each open stream is a member of a sorted set per key in Redis
(``<prefix>:metrics:streams:<bucket>``), scored by its last heartbeat in Redis' own clock, so
replicas agree on time. A stream refreshes its score every ``HEARTBEAT_S`` and removes itself
when it ends; a replica killed mid-stream removes nothing, so its members stop being refreshed
and are pruned ``STALE_AFTER_S`` later, by the next stream of the key that asks for a slot (and
the whole set expires then if none does).
"""

from __future__ import annotations

import logging
import secrets

import redis

from batchgate import keys as key_names

log = logging.getLogger(__name__)

#: An open stream refreshes its slot this often.
HEARTBEAT_S = 2.0
#: A slot not refreshed for this long (four heartbeats) belongs to a stream that no longer runs
#: (its replica was killed): the next stream of the key that asks for a slot prunes it. A
#: stream that stalled this long (a client not reading) takes its slot anew, if one is free.
STALE_AFTER_S = 8.0

#: KEYS[1] the key's open streams (member: stream id, score: last heartbeat, Redis time);
#: ARGV stream id, cap, stale-after seconds. Prunes the stale, then refreshes the stream's
#: slot, or takes one when fewer than the cap are held. Returns {held (1/0), streams open}.
_HOLD_SLOT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local stale_after = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale_after)
local open = redis.call('ZCARD', KEYS[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if open >= tonumber(ARGV[2]) then
    return {0, open}
  end
  open = open + 1
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(stale_after))
return {1, open}
"""


def streams_key(prefix: str, bucket: str) -> str:
    """The sorted set of one key's open metrics streams (``bucket``: ``key:<hash>``, or
    ``ip:<address>`` with auth off)."""
    return key_names.metrics_streams(prefix, bucket)


class StreamSlot:
    """One metrics stream's place among the ``limit`` its key may hold open."""

    def __init__(self, client: redis.Redis, key: str, limit: int) -> None:
        self.id = secrets.token_hex(8)
        self.key = key
        self.limit = limit
        self._redis = client
        self._script = client.register_script(_HOLD_SLOT)
        self._released = False

    def hold(self) -> bool:
        """Take the slot, or refresh it; False when the key already holds ``limit`` others."""
        held, _open = self._script(keys=[self.key], args=[self.id, self.limit, STALE_AFTER_S])
        return bool(held)

    def release(self) -> None:
        """Give the slot back (once; a Redis error leaves it to expire as stale)."""
        if self._released:
            return
        self._released = True
        try:
            self._redis.zrem(self.key, self.id)
        except redis.RedisError as exc:
            log.warning("could not release metrics stream slot (it expires in %.0fs): %s", STALE_AFTER_S, exc)
