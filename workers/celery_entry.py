"""Entry point for ``celery -A workers.celery_entry``: reads Settings once and wires everything."""

from __future__ import annotations

from batchgate.settings import Settings
from workers.app import create_celery
from workers.heartbeat import heartbeat_step
from workers.runtime import WorkerRuntime
from workers.tasks import register_tasks

settings = Settings.from_env()
app = create_celery(settings)
runtime = WorkerRuntime(settings)
app.steps["consumer"].add(
    heartbeat_step(settings.broker, runtime.leases, runtime.bulk_lane.bulk.requeue_holder)
)
register_tasks(app, runtime)
