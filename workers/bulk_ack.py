"""Acknowledge a finished batch's messages in one Redis round trip instead of one each.

kombu's Redis transport acknowledges a message by removing its delivery tag from the
unacked index and hash (a MULTI/EXEC per message): about a fifth of the worker's CPU under
load, on its one bottleneck thread's connection pool. A batch's tags are removed together
here (``ZREM``/``HDEL`` take many members), then each message is marked acknowledged the
way kombu would. Any other transport, or a message already settled, takes the normal path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from kombu.transport import redis as redis_transport
from kombu.transport import virtual


def acknowledge_all(requests: Iterable[Any]) -> None:
    """Acknowledge every not yet acknowledged celery ``Request`` of ``requests``."""
    by_channel: dict[Any, list[Any]] = defaultdict(list)
    for request in requests:
        if not request.acknowledged:
            by_channel[request.message.channel].append(request)
    for channel, pending in by_channel.items():
        qos = getattr(channel, "qos", None)
        if not isinstance(qos, redis_transport.QoS) or len(pending) == 1:
            for request in pending:
                request.acknowledge()
            continue
        tags = [request.message.delivery_tag for request in pending]
        with qos.pipe_or_acquire() as pipe:
            pipe.zrem(qos.unacked_index_key, *tags).hdel(qos.unacked_key, *tags).execute()
        for request in pending:
            virtual.QoS.ack(qos, request.message.delivery_tag)  # forget it as delivered
            request.message._state = "ACK"
            request.acknowledged = True
