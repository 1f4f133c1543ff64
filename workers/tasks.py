"""The Celery tasks: the batch consumer and a housekeeping sampler."""

from __future__ import annotations

import json
import time
from typing import Any

from celery import Celery

from batchgate.broker import (
    BULK_DISPATCH_TASK,
    INFER_TASK,
    PUBLISH_METRICS_TASK,
    RECOVER_ORPHANS_TASK,
    WARM_CACHE_TASK,
    Publisher,
)
from batching.flush_policy import FlushLimits
from workers.batch_consumer import WindowedBatches
from workers.batch_job import Delivery, ResultsNotStored, process_batch
from workers.cache_warming import report_dict, warm
from workers.leases import live_leases, oldest_queued_task
from workers.orphan_sweeper import Whereabouts, sweep
from workers.runtime import WorkerRuntime


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    """Define the tasks on ``app``, wired to ``runtime``."""
    settings = runtime.settings

    class InferBatches(WindowedBatches):
        leases = runtime.leases
        call_costs = runtime.call_costs
        pacer = runtime.call_pacer
        pool_size = settings.consumer.worker_concurrency
        flush_limits = FlushLimits(
            max_size=settings.consumer.batch_max_size,
            window_s=settings.consumer.batch_window_ms / 1000,
            max_in_flight=settings.consumer.adaptive_slots
            if settings.consumer.flush_mode == "adaptive"
            else None,
        )

    @app.task(name=INFER_TASK, base=InferBatches, bind=True, acks_late=True, ignore_result=True)
    def infer(self: InferBatches, requests: list[Any]) -> None:
        """Answer a flushed batch of buffered requests (each a celery-batches SimpleRequest)."""
        deliveries = [
            Delivery(task_id=r.id, payload=dict(r.kwargs), received_at=self.arrivals.pop(r.id, None))
            for r in requests
        ]
        ids = [d.task_id for d in deliveries]
        began, model_s, generated = time.monotonic(), 0.0, 0
        try:
            self.emit_started(ids)  # task events for Flower: celery-batches sends none itself
            try:
                with runtime.measuring_batch(len(deliveries)):
                    outcomes = process_batch(deliveries, runtime.batch_context)
            except ResultsNotStored as exc:
                # Redis was unreachable: the messages must not be acknowledged without their
                # answers stored; they go back to the queue instead (WindowedBatches.settle).
                self.keep_unacknowledged(ids)
                self.emit_crashed(ids, exc)
                return
            except Exception as exc:
                self.emit_crashed(ids, exc)
                raise
            self.emit_finished(ids, outcomes, time.monotonic() - began)
            # The model's own time (the longest of the batch's calls, quota waits left out) per
            # token it generated tells the slot tuner whether more calls at once slow it down.
            model_s = max((float(o.timings.get("model_ms") or 0.0) for o in outcomes), default=0.0) / 1000
            generated = sum(
                int(((o.result or {}).get("usage") or {}).get("output_tokens", 0)) for o in outcomes
            )
        finally:
            # Frees the batch slot: adaptive flushing may send the next batch now.
            self.batch_done(ids, model_s or time.monotonic() - began, generated)

    @app.task(name=WARM_CACHE_TASK, ignore_result=True)
    def warm_cache(
        queries: list[dict[str, Any]], rate_per_s: float, report_key: str | None = None, tenant: str = ""
    ) -> dict[str, int]:
        """Pre-compute answers for ``queries`` into ``tenant``'s response cache at a bounded rate."""
        if not tenant:
            raise ValueError("a warming run names the tenant whose cache it fills")
        report = report_dict(warm(queries, tenant, settings, runtime.cache, runtime.run_engine, rate_per_s))
        if report_key:
            runtime.redis.set(report_key, json.dumps(report), ex=3600)
        return report

    @app.task(name=BULK_DISPATCH_TASK, ignore_result=True)
    def bulk_dispatch() -> int:
        """Gather the bulk tasks waiting into Gemini batch jobs (beat, every few seconds)."""
        return runtime.dispatch_bulk()

    publisher = Publisher(app, settings)

    @app.task(name=RECOVER_ORPHANS_TASK, ignore_result=True)
    def recover_orphans() -> dict[str, int]:
        """Re-enqueue requests overdue in the in-flight index (beat, every few seconds)."""
        now = time.time()
        whereabouts = Whereabouts(
            held=lambda: set(
                live_leases(
                    runtime.redis, settings.broker.key_prefix, now, settings.broker.worker_lease_s
                ).values()
            ),
            oldest_queued=lambda: oldest_queued_task(runtime.redis, settings.broker.queue),
        )
        report = sweep(
            runtime.store,
            publisher,
            now,
            settings.broker.orphan_after_s,
            settings.broker.orphan_max_recoveries,
            whereabouts,
        )
        return dict(vars(report))

    @app.task(name=PUBLISH_METRICS_TASK, ignore_result=True)
    def publish_metrics() -> dict[str, float]:
        """Compute and publish the metrics snapshot (beat, every few seconds); returns its cost."""
        return dict(runtime.metrics_publisher.publish()["cost_ms"])
