"""The workers' Celery application: the broker's (``batchgate.broker``) plus what only a
worker needs: its pool, prefetch, task events and beat schedule."""

from __future__ import annotations

from celery import Celery

from batchgate.broker import BULK_DISPATCH_TASK, PUBLISH_METRICS_TASK, RECOVER_ORPHANS_TASK, broker_app
from batchgate.settings import Settings

#: How often beat asks for a metrics snapshot.
METRICS_INTERVAL_S = 2.0


def create_celery(settings: Settings) -> Celery:
    """The broker's app, shaped as a batch worker. The worker's shape lives here, not on a
    command line, so a plain ``celery -A workers.celery_entry worker`` runs as ``make run``
    does: threads (the batch consumer's event loop and the engine's calls are I/O), a
    prefetch above a batch (see PITFALLS), and task events for Flower; it consumes both
    queues (``task_queues``)."""
    app = broker_app(settings)
    app.conf.update(
        worker_pool="threads",
        worker_concurrency=settings.consumer.worker_concurrency,
        worker_prefetch_multiplier=settings.consumer.prefetch_multiplier,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        beat_schedule={
            "publish-metrics": {
                "task": PUBLISH_METRICS_TASK,
                "schedule": METRICS_INTERVAL_S,
                "options": {"expires": METRICS_INTERVAL_S * 2},
            },
            "recover-orphans": {
                "task": RECOVER_ORPHANS_TASK,
                "schedule": settings.broker.orphan_sweep_interval_s,
                "options": {"expires": settings.broker.orphan_sweep_interval_s * 2},
            },
            "bulk-dispatch": {
                "task": BULK_DISPATCH_TASK,
                "schedule": settings.gemini.bulk_dispatch_s,
                "options": {"expires": settings.gemini.bulk_dispatch_s * 2},
            },
        },
    )
    return app
