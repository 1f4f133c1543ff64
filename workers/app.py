"""The Celery application: broker, queues and delivery guarantees, from Settings."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from batchgate.settings import Settings

INFER_TASK = "batchgate.infer"
WARM_CACHE_TASK = "batchgate.warm_cache"
PUBLISH_METRICS_TASK = "batchgate.publish_metrics"
RECOVER_ORPHANS_TASK = "batchgate.recover_orphans"
#: How often beat asks for a metrics snapshot.
METRICS_INTERVAL_S = 2.0


def housekeeping_queue(settings: Settings) -> str:
    """Small periodic tasks get their own queue so they never sit behind a batch backlog."""
    return f"{settings.queue}.housekeeping"


def delivery_options(settings: Settings) -> dict[str, float]:
    """kombu Redis transport options that make redelivery happen when we say.

    kombu only looks for overdue unacknowledged messages every ``unacked_restore_interval``
    (10 s) times ``unacked_restore_throttle`` (10) seconds, about 100 s, and a worker killed
    while holding the restore lock blocks restores for ``unacked_mutex_expire`` (300 s):
    measured, a killed worker's messages came back only after the orphan sweeper. Here a
    consuming worker scans four times per visibility timeout, at most every 10 s, and a
    stale lock expires after one visibility timeout.
    """
    visibility = settings.visibility_timeout_s
    return {
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1.0, min(10.0, visibility / 4)),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": visibility,
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured for at-least-once delivery of inference requests.

    Messages are acknowledged only after their batch has stored every result
    (``acks_late``); a worker that dies leaves them unacknowledged, and Redis redelivers
    them after ``visibility_timeout_s`` (kombu's Redis transport reads it from
    ``broker_transport_options``; a consuming worker restores overdue messages every few
    seconds). What even that misses, the orphan sweeper re-enqueues. Only JSON crosses the
    broker. A worker consumes both queues (``task_queues``) with a thread pool and sends
    task events, without any command-line option.
    """
    app = Celery("batchgate", broker=settings.redis_url, backend=settings.redis_url)
    transport_options = delivery_options(settings)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_queues=[Queue(settings.queue), Queue(housekeeping_queue(settings))],
        task_routes={
            WARM_CACHE_TASK: {"queue": housekeeping_queue(settings)},
            PUBLISH_METRICS_TASK: {"queue": housekeeping_queue(settings)},
            RECOVER_ORPHANS_TASK: {"queue": housekeeping_queue(settings)},
        },
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # The worker's shape lives here, not on a command line, so a plain
        # `celery -A workers.celery_entry worker` runs as `make run` does: threads (the batch
        # consumer's event loop and the engine's calls are I/O), a prefetch above a batch
        # (see PITFALLS), and task events for Flower.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        enable_utc=True,
        beat_schedule={
            "publish-metrics": {
                "task": PUBLISH_METRICS_TASK,
                "schedule": METRICS_INTERVAL_S,
                "options": {"expires": METRICS_INTERVAL_S * 2},
            },
            "recover-orphans": {
                "task": RECOVER_ORPHANS_TASK,
                "schedule": settings.orphan_sweep_interval_s,
                "options": {"expires": settings.orphan_sweep_interval_s * 2},
            },
        },
    )
    return app
