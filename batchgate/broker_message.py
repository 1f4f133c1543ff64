"""A task message as kombu's Redis transport stores it, built without a producer.

The API writes a task's record and its message in one Lua script (``TaskStore.create``): one
Redis round trip instead of two, and no moment where a record waits for a message that a
crash never sent. Celery still builds the message (``amqp.create_task_message``: headers,
properties and body exactly as ``send_task`` makes them); this module only wraps it the way
kombu's virtual channel does before its ``LPUSH`` (``prepare_message`` and ``basic_publish``:
the body base64-encoded, the delivery info and a delivery tag), for a direct queue reached
through the anonymous exchange, which is how Celery routes a task to a named queue.
``tests/batchgate/test_broker_message.py`` holds it to what ``send_task`` writes, so a Celery
or kombu upgrade that changes the format fails there, not in production.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps

#: kombu's ``delivery_mode`` for a persistent message (what a Celery queue's exchange uses).
PERSISTENT = 2


@dataclass(frozen=True)
class QueuedMessage:
    """One message, ready to be pushed onto the left of ``list_key`` (as kombu's ``_put``)."""

    list_key: str
    payload: str


def task_message(
    app: Celery,
    queue: str,
    task_id: str,
    name: str,
    kwargs: dict[str, Any],
    argsrepr: str,
    kwargsrepr: str,
) -> QueuedMessage:
    """The message ``app.send_task(name, kwargs=kwargs, task_id=task_id, queue=queue,
    ignore_result=True, argsrepr=argsrepr, kwargsrepr=kwargsrepr)`` would push onto ``queue``.

    Priority 0 is the queue's own list (kombu keeps other priorities in suffixed lists).
    """
    headers, properties, body, _sent_event = app.amqp.create_task_message(
        task_id,
        name,
        args=(),
        kwargs=kwargs,
        reply_to=app.thread_oid,
        create_sent_event=False,
        ignore_result=True,
        argsrepr=argsrepr,
        kwargsrepr=kwargsrepr,
    )
    content_type, content_encoding, data = serialize(body, serializer=app.conf.task_serializer)
    raw = data.encode(content_encoding) if isinstance(data, str) else data
    envelope = {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            **properties,
            "argsrepr": argsrepr,
            "kwargsrepr": kwargsrepr,
            "delivery_mode": PERSISTENT,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return QueuedMessage(queue, dumps(envelope))
