"""kombu's Redis transport, publishing through one Redis client per channel.

kombu 5.7's Redis channel builds a new ``redis.Redis`` for every synchronous command:
``conn_or_acquire()`` without a client yields ``_create_client()``, and ``_put`` (every task
the API sends) and ``_put_fanout`` (every event the worker sends) call it so. Measured with
py-spy, constructing that client was about 9 % of the API's CPU per request. The client holds
no connection of its own: each command borrows one from the channel's shared ``pool`` and
gives it back, so one client serves every thread and greenlet and creating one per command
buys nothing.

Celery loads this transport by its dotted path (``broker_transport``, see
``batchgate.broker``); everything but the client's lifetime is kombu's, and URIs still say
``redis://``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis

#: What ``broker_transport`` names: kombu resolves a ``module:Class`` path itself.
TRANSPORT_PATH = "batchgate.redis_transport:Transport"

# ``Connection.as_uri()`` writes the transport's name as the URL scheme, through this table
# (kombu's own maps ``pyamqp`` to ``amqp``). Flower picks its broker client by that scheme:
# without it, Flower's broker page and queue lengths would answer 404.
Connection.resolve_aliases.setdefault(TRANSPORT_PATH, "redis")


class Channel(kombu_redis.Channel):
    """A Redis channel whose synchronous commands share one client on the channel's pool.

    Every ``conn_or_acquire()`` caller gets the same client: publishing, ``_get``, ``_size``,
    ``_purge``, bindings and the QoS's ack, reject and restore (which make their own
    pipelines and transactions from it, so no command state is shared). A caller that passes
    its own client keeps it. The BRPOP/LISTEN clients (``client``, ``subclient``) are
    untouched: they stay on the separate ``async_pool``. The client is rebuilt when kombu
    replaces the pool (``_disconnect_pools`` after a fork or on close), so it never holds a
    discarded pool.
    """

    _shared: tuple[redis.ConnectionPool, redis.Redis] | None = None

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
