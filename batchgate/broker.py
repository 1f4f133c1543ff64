"""How a task crosses the broker, as both sides see it: task names, queues, delivery options,
the Celery app that carries them, and the publisher the API enqueues with.

The API publishes by task name through this module and never imports ``workers/``; the
workers build their app on ``broker_app`` and add what only a worker needs
(``workers.app.create_celery``: pool, prefetch, events, beat schedule).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from batchgate.broker_message import QueuedMessage, task_message
from batchgate.redis_transport import TRANSPORT_PATH, transport_for
from batchgate.settings import Settings

INFER_TASK = "batchgate.infer"
WARM_CACHE_TASK = "batchgate.warm_cache"
PUBLISH_METRICS_TASK = "batchgate.publish_metrics"
RECOVER_ORPHANS_TASK = "batchgate.recover_orphans"
BULK_DISPATCH_TASK = "batchgate.bulk_dispatch"


def housekeeping_queue(settings: Settings) -> str:
    """Small periodic tasks get their own queue so they never sit behind a batch backlog."""
    return f"{settings.broker.queue}.housekeeping"


def delivery_options(settings: Settings) -> dict[str, float]:
    """kombu Redis transport options that make redelivery happen when we say.

    kombu only looks for overdue unacknowledged messages every ``unacked_restore_interval``
    (10 s) times ``unacked_restore_throttle`` (10) seconds, about 100 s, and a worker killed
    while holding the restore lock blocks restores for ``unacked_mutex_expire`` (300 s):
    measured, a killed worker's messages came back only after the orphan sweeper. Here a
    consuming worker scans four times per visibility timeout, at most every 10 s, and a
    stale lock expires after one visibility timeout.
    """
    visibility = settings.broker.visibility_timeout_s
    return {
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1.0, min(10.0, visibility / 4)),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": visibility,
    }


def broker_app(settings: Settings) -> Celery:
    """A Celery app on the broker, configured for at-least-once delivery of inference requests.

    Messages are acknowledged only after their batch has stored every result
    (``acks_late``); a worker that dies leaves them unacknowledged, and Redis redelivers
    them after ``visibility_timeout_s`` (kombu's Redis transport reads it from
    ``broker_transport_options``; a consuming worker restores overdue messages every few
    seconds). What even that misses, the orphan sweeper re-enqueues. Only JSON crosses the
    broker. A ``redis://`` broker goes through ``batchgate.redis_transport``: one Redis client
    per channel rather than one built per message.
    """
    app = Celery("batchgate", broker=settings.broker.redis_url, backend=settings.broker.redis_url)
    transport_options = delivery_options(settings)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=settings.broker.queue,
        task_queues=[Queue(settings.broker.queue), Queue(housekeeping_queue(settings))],
        task_routes={
            WARM_CACHE_TASK: {"queue": housekeeping_queue(settings)},
            PUBLISH_METRICS_TASK: {"queue": housekeeping_queue(settings)},
            RECOVER_ORPHANS_TASK: {"queue": housekeeping_queue(settings)},
        },
        broker_transport=transport_for(settings.broker.redis_url),
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        enable_utc=True,
    )
    return app


class Publisher:
    """Publishes task messages; results come back through the task store, not Celery."""

    def __init__(self, celery_app: Celery, settings: Settings) -> None:
        self._app = celery_app
        self._queue = settings.broker.queue
        #: The broker is our Redis transport, so a message can be written by the caller's own
        #: Redis script (``queued_message``) instead of through a producer.
        self._writable = celery_app.conf.broker_transport == TRANSPORT_PATH

    def queued_message(
        self, task_id: str, request: dict[str, Any], submitted_at: float
    ) -> QueuedMessage | None:
        """The message ``publish`` would send, for a caller that pushes it in the same Redis
        script as the task's record (one round trip, and never one without the other); None
        when the broker is not a plain ``redis://`` one (then ``publish``)."""
        if not self._writable:
            return None
        return task_message(
            self._app,
            self._queue,
            task_id,
            INFER_TASK,
            {"request": request, "submitted_at": submitted_at},
            argsrepr="()",
            kwargsrepr=summary(request),
        )

    def publish(self, task_id: str, request: dict[str, Any], submitted_at: float) -> None:
        # ignore_result: Celery's Redis backend would otherwise subscribe this process to
        # every task's result channel and never read the confirmations (see PITFALLS).
        # argsrepr/kwargsrepr: Celery would otherwise ``saferepr`` the whole request into the
        # message headers (about 6 % of the API's CPU, and the prompt into every log line
        # and monitor that shows them); a short summary says enough.
        self._app.send_task(
            INFER_TASK,
            kwargs={"request": request, "submitted_at": submitted_at},
            task_id=task_id,
            queue=self._queue,
            ignore_result=True,
            argsrepr="()",
            kwargsrepr=summary(request),
        )


def summary(request: dict[str, Any]) -> str:
    """What a message's headers show of a request: its model and sizes, never its text."""
    prompt = request.get("prompt") or ""
    return f"{{model: {request.get('model', '?')}, prompt: {len(prompt)} chars}}"
