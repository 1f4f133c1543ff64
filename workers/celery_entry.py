"""Entry point for ``celery -A workers.celery_entry``: reads Settings once and wires everything."""

from __future__ import annotations

from batchgate.settings import Settings
from workers.app import create_celery
from workers.heartbeat import Heartbeat
from workers.runtime import WorkerRuntime
from workers.tasks import register_tasks

settings = Settings.from_env()
app = create_celery(settings)
app.batchgate_settings = settings  # type: ignore[attr-defined]
app.steps["consumer"].add(Heartbeat)
runtime = WorkerRuntime(settings)
app.batchgate_leases = runtime.leases  # type: ignore[attr-defined]
register_tasks(app, runtime)
