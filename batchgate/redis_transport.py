"""kombu's Redis transport, publishing through one Redis client per channel.

kombu 5.7's Redis channel builds a new ``redis.Redis`` for every synchronous command:
``conn_or_acquire()`` without a client yields ``_create_client()``, and ``_put`` (every task
the API sends) and ``_put_fanout`` (every event the worker sends) call it so. Measured with
py-spy, constructing that client was about 9 % of the API's CPU per request. The client holds
no connection of its own: each command borrows one from the channel's shared ``pool`` and
gives it back, so one client serves every thread and greenlet and creating one per command
buys nothing.

Consuming, kombu re-arms BRPOP after every message and records each one in the unacked
index and hash with its own MULTI/EXEC (``QoS.append``): py-spy put those at about 40 % of the
worker's CPU. Here a BRPOP that answers from a list also takes up to ``MAX_EXTRA`` more messages
from that very list in the same turn, as far as the prefetch limit allows, recording them all
together with the popping in one Lua script, before any is delivered (``Channel._brpop_read``).

Celery loads this transport by its dotted path (``broker_transport``, see
``batchgate.broker``); everything else is kombu's, and URIs still say ``redis://``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

#: What ``broker_transport`` names: kombu resolves a ``module:Class`` path itself.
TRANSPORT_PATH = "batchgate.redis_transport:Transport"

# ``Connection.as_uri()`` writes the transport's name as the URL scheme, through this table
# (kombu's own maps ``pyamqp`` to ``amqp``). Flower picks its broker client by that scheme:
# without it, Flower's broker page and queue lengths would answer 404.
Connection.resolve_aliases.setdefault(TRANSPORT_PATH, "redis")

#: Most messages taken with a BRPOP's answer in one turn, besides the one it returned. The
#: batch worker wants many messages quickly (it prefetches (batch size + 1) x concurrency,
#: 264 by default); 32 lets a full batch (32 by default) arrive in one turn, while bounding how
#: long one turn holds the consumer thread (each message still runs Celery's receive callback)
#: before the other queue (housekeeping) gets its BRPOP, and how long the script holds Redis.
MAX_EXTRA = 32

# Records the message BRPOP returned (ARGV[3], ARGV[4]) and takes up to ARGV[1] more from the
# right of the same list, recording each in the unacked index (scored ARGV[2], the client's
# clock, as kombu does) and hash (``[payload, exchange, routing_key]``, what kombu's restore
# reads), atomically. Writes come before the LTRIM and the first write is checked against
# maxmemory (the script is refused whole when Redis is full), so nothing is removed from the
# list unless recorded. A message the script cannot read stops the take: it stays first in the
# list for the next BRPOP, which treats it as kombu would. Returns the items taken, in the
# order BRPOP would have taken them, and their delivery tags.
_TAKE_LUA = """
local n = tonumber(ARGV[1])
local items = {}
if n > 0 then items = redis.call('LRANGE', KEYS[1], -n, -1) end
local index = {ARGV[2], ARGV[3]}
local records = {ARGV[3], ARGV[4]}
local taken, tags = {}, {}
for i = #items, 1, -1 do
  local item = items[i]
  local ok, m = pcall(cjson.decode, item)
  if not ok or type(m) ~= 'table' or type(m['properties']) ~= 'table' then break end
  local tag, info = m['properties']['delivery_tag'], m['properties']['delivery_info']
  if type(tag) ~= 'string' or type(info) ~= 'table' or type(info['exchange']) ~= 'string'
      or type(info['routing_key']) ~= 'string' then break end
  index[#index + 1] = ARGV[2]
  index[#index + 1] = tag
  records[#records + 1] = tag
  records[#records + 1] = '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ','
    .. cjson.encode(info['routing_key']) .. ']'
  taken[#taken + 1] = item
  tags[#tags + 1] = tag
end
redis.call('ZADD', KEYS[2], unpack(index))
redis.call('HSET', KEYS[3], unpack(records))
if #taken > 0 then redis.call('LTRIM', KEYS[1], 0, -#taken - 1) end
return {taken, tags}
"""

# Puts back messages taken but never delivered (their consumer went away mid-turn, or a
# callback raised): ARGV is tag, item, tag, item... in delivery order. Each goes back to the
# right of its list, where it was, the earliest rightmost, but only if still recorded (so a
# message that something else restored meanwhile is not pushed twice).
_GIVE_BACK_LUA = """
for i = #ARGV - 1, 1, -2 do
  if redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
  end
end
return 0
"""


class _Lua:
    """A Lua script sent by EVALSHA, and whole on the first NOSCRIPT (redis-py's ``Script``
    is bound to one client; ours may be rebuilt)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.text, len(keys), *keys, *args)


_take = _Lua(_TAKE_LUA)
_give_back = _Lua(_GIVE_BACK_LUA)


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, but ``append`` skips the Redis writes for messages the channel
    already recorded while taking them (``recorded``); the in-memory bookkeeping is kombu's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Delivery tags recorded in the unacked index and hash, not yet appended. Only the
        #: consuming thread touches it (as kombu's ``_delivered``).
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    """A Redis channel whose synchronous commands share one client on the channel's pool.

    Every ``conn_or_acquire()`` caller gets the same client: publishing, ``_get``, ``_size``,
    ``_purge``, bindings and the QoS's ack, reject and restore (which make their own
    pipelines and transactions from it, so no command state is shared). A caller that passes
    its own client keeps it. The BRPOP/LISTEN clients (``client``, ``subclient``) are
    untouched: they stay on the separate ``async_pool``. The client is rebuilt when kombu
    replaces the pool (``_disconnect_pools`` after a fork or on close), so it never holds a
    discarded pool.

    Consuming, a BRPOP's answer brings up to ``MAX_EXTRA`` more messages of its list, within
    the prefetch limit, all recorded as unacknowledged before the first is delivered
    (``_brpop_read``). Fanout (LISTEN), ``basic_get`` and publishing stay kombu's.
    """

    QoS = QoS

    _shared: tuple[redis.ConnectionPool, redis.Redis] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Queue -> the callback this channel registered on the transport for an acknowledging
        #: consumer of it: only such messages are taken several at a time (a turn compares
        #: identities, so a cancelled or replaced consumer is noticed).
        self._ack_callbacks: dict[str, Callable[[Any], Any]] = {}
        super().__init__(*args, **kwargs)

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool, shared = self.pool, self._shared
        if shared is None or shared[0] is not pool:
            # Two threads may both build one here: harmless, the last one stays.
            shared = self._shared = (pool, self._create_client())
        yield shared[1]

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        ret = super().basic_consume(queue, *args, **kwargs)
        no_ack = kwargs["no_ack"] if "no_ack" in kwargs else bool(args and args[0])
        callback = self.connection._callbacks.get(queue)
        if no_ack or callback is None or queue in self.active_fanout_queues:
            # A message nobody acknowledges must not be recorded as unacknowledged: it would
            # be restored after the visibility timeout, a second delivery.
            self._ack_callbacks.pop(queue, None)
        else:
            self._ack_callbacks[queue] = callback
        return ret

    def basic_cancel(self, consumer_tag: str) -> Any:
        # kombu defers the cancel itself while a read is under way (celery/celery#1773), so
        # a callback that cancels its consumer would still get the rest of its turn: stop
        # the turn now instead, and give the rest back.
        self._ack_callbacks.pop(self._tag_to_queue.get(consumer_tag), None)
        return super().basic_cancel(consumer_tag)

    def _brpop_read(self, **options: Any) -> bool:
        """Read BRPOP's answer and hand it to ``_deliver_turn``, which needs the exact list
        (priority level included) that answered; kombu's own method keeps only the queue's
        name. The rest keeps kombu's contract for this method: a lost connection is dropped so
        the next poll reconnects, no answer is ``Empty``, and the poll is over either way."""
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # As kombu: disconnect so the next iteration reconnects.
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            key, item = (bytes_to_str(part) for part in dest__item)
            dest = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._deliver_turn(key, dest, item)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu's own "no BRPOP pending"
            self._flush_brpop_reauth()

    def _deliver_turn(self, key: str, dest: str, item: str) -> None:
        """Deliver BRPOP's message from list ``key`` and up to ``_room_for_more`` more of that
        list, in order, after recording them all as unacknowledged in one script.

        A message taken but not delivered (its consumer was cancelled, or the prefetch limit
        lowered, by an earlier message's callback; or a callback raised) goes back where it was
        in its list. One whose own delivery raised before kombu's ``QoS.append`` stays recorded:
        kombu restores it after the visibility timeout (kombu would have dropped it).
        """
        payload = loads(item)
        room = self._room_for_more(dest)
        record = _record(payload) if room else None
        if record is None:
            self.connection._deliver(payload, dest)  # kombu's way: QoS.append records it
            return
        qos = self.qos
        keys = [key, qos.unacked_index_key, qos.unacked_key]
        try:
            with self.conn_or_acquire() as client:
                # The unacked index is scored by the client's wall clock: kombu's restore
                # and our lease sweeper compare it with theirs.
                taken, taken_tags = _take(client, keys, [room, time.time(), *record])
        except (*self.connection_errors, self.ResponseError):
            # Nothing was taken, or (the reply lost) all was recorded and kombu restores
            # it after the visibility timeout. This message goes kombu's way.
            log.warning("could not take more messages from %s", key, exc_info=True)
            self.connection._deliver(payload, dest)
            return
        tags = [record[0], *map(bytes_to_str, taken_tags)]
        items = [item, *map(bytes_to_str, taken)]
        qos.recorded.update(tags)
        callback = self._acking(dest)
        started = 0
        try:
            for i, raw in enumerate(items):
                if i and (self._acking(dest) is not callback or not qos.can_consume()):
                    break
                started = i + 1
                self.connection._deliver(loads(raw) if i else payload, dest)
        finally:
            rest = [(tag, raw) for tag, raw in zip(tags[started:], items[started:], strict=True)]
            qos.recorded.difference_update(tags)
            if rest:
                self._give_back(keys, rest)

    def _room_for_more(self, dest: str) -> int:
        """How many messages of ``dest`` this turn may take besides BRPOP's: none unless they
        go to this channel's acknowledging consumer through our QoS, no more than the prefetch
        limit leaves once BRPOP's own is counted, and at most ``MAX_EXTRA``."""
        qos = self.qos
        if (
            self._acking(dest) is None
            or not isinstance(qos, QoS)  # ack_emulation off: nothing to record
            # Celery's worker_disable_prefetch replaces it to take one message per free slot.
            or "can_consume" in vars(qos)
            # kombu's prefixing client would prefix only the first key of a script.
            or self.global_keyprefix
        ):
            return 0
        room: int | None = qos.can_consume_max_estimate()  # None: no prefetch limit
        return MAX_EXTRA if room is None else max(0, min(MAX_EXTRA, room - 1))

    def _acking(self, queue: str) -> Callable[[Any], Any] | None:
        """The callback of this channel's acknowledging consumer of ``queue``, if it still
        receives ``queue``'s messages (not cancelled, not replaced on the transport)."""
        callback = self._ack_callbacks.get(queue)
        return (
            callback if callback is not None and self.connection._callbacks.get(queue) is callback else None
        )

    def _give_back(self, keys: list[str], rest: list[tuple[str, str]]) -> None:
        """Put messages taken but not delivered back on the right of their list, in order."""
        try:
            with self.conn_or_acquire() as client:
                _give_back(client, keys, [part for pair in rest for part in pair])
        except (*self.connection_errors, self.ResponseError):
            log.warning(
                "%d messages taken from %s stay unacknowledged until the visibility timeout",
                len(rest),
                keys[0],
                exc_info=True,
            )


def _record(payload: dict[str, Any]) -> tuple[str, str] | None:
    """A message's entry as kombu's ``QoS.append`` writes it: its delivery tag and
    ``[payload, exchange, routing_key]``; None when it has none (kombu's way then fails)."""
    try:
        properties = payload["properties"]
        info = properties["delivery_info"]
        return properties["delivery_tag"], dumps([payload, info["exchange"], info["routing_key"]])
    except (KeyError, TypeError):
        return None


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`; the same ``driver_type`` ("redis"), so
    Celery treats it as the Redis broker it is."""

    Channel = Channel


def transport_for(url: str) -> str | None:
    """The ``broker_transport`` for a broker at ``url``: ours for ``redis://``, kombu's
    choice (None) otherwise.

    A named transport makes kombu ignore the URL's scheme, and kombu turns TLS on from the
    scheme (``rediss://``): that and every other scheme (``sentinel://``, ``redis+socket://``)
    keep kombu's own transport.
    """
    return TRANSPORT_PATH if urlsplit(url).scheme == "redis" else None
