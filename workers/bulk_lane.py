"""The bulk lane: tasks that can wait hours are answered through Gemini's Batch API at half price.

The API pushes a bulk task's id onto a list in Redis instead of the Celery queue, and enters
it in the in-flight index only at its deadline (``BATCHGATE_BULK_DEADLINE_S``), so the orphan
sweeper leaves it alone meanwhile. Every ``BATCHGATE_BULK_DISPATCH_S`` beat runs
``dispatch`` on one worker: it takes the waiting ids, claims them, and starts answering them
on the worker's engine loop, without waiting: the batch engine runs unchanged over a
``BulkModelClient``, so the tasks are packed per tenant, split back and re-asked as
interactive ones, but every call goes into a Gemini batch job (one per tenant, model and
dispatch, more only for calls sent again: a job's fate is shared by all it carries). Each task's record shows its job and the job's state
(``bulk``); its result's usage says ``"pricing": "batch"``. A worker that dies mid-job leaves
its tasks running under a dead claim; once its lease lapses, a live worker's heartbeat puts
them back at the front of the line (``BulkStore.requeue_holder``) for the next job. Should
none be left, the orphan sweeper sends them on the interactive lane at their deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from batchgate.bulk_store import BulkStore
from batchgate.taskstore import FAILED, Holder, Outcome, TaskStore
from batching.bulk_client import BulkModelClient
from batching.engine import BatchInferenceEngine
from batching.genai_batches import GenaiBatchBackend
from batching.genai_client import GenaiModelClient
from batching.packing import PackingLimits
from batching.pricing import DEFAULT_PRICE_TABLE, PriceTable
from batching.retry import RetryPolicy
from batching.types import InferenceRequest
from workers.batch_job import Delivery, outcome_of, to_inference_request

log = logging.getLogger(__name__)

#: Concurrent calls a bulk run may have outstanding: they wait in jobs, not in connections.
BULK_CALLS = 100_000


@dataclass(frozen=True)
class BulkLane:
    """What a dispatch needs from its worker (``workers.runtime.WorkerRuntime.bulk_lane``)."""

    store: TaskStore
    bulk: BulkStore
    holder: Holder
    default_model: str
    limits: PackingLimits
    attempts: int
    poll_s: float
    max_tasks: int
    deadline_s: int
    inline_max_bytes: int
    #: What each model's tokens cost (bulk results at the Batch API's half price).
    prices: PriceTable = DEFAULT_PRICE_TABLE


def dispatch(lane: BulkLane, client: GenaiModelClient, now: float | None = None) -> tuple[list[str], Any]:
    """Take and claim the waiting bulk tasks; return their ids and the coroutine that answers
    them (the caller runs it on the engine's loop, without waiting for it)."""
    stamp = time.time() if now is None else now
    ids = lane.bulk.take(lane.max_tasks)
    if not ids:
        return [], None
    taken_now = lane.store.claim(ids, lane.holder, stamp, len(ids))
    claimed = [t for t in ids if t in taken_now]
    deliveries, outcomes = [], []
    for task_id, record in zip(claimed, lane.store.get_many(claimed), strict=True):
        if record is None or not isinstance(record.get("request"), dict):
            continue  # answered, expired or another's: nothing to do
        delivery = Delivery(
            task_id, {"request": record["request"], "submitted_at": record.get("submitted_at")}
        )
        try:
            deliveries.append((delivery, to_inference_request(delivery, lane.default_model)))
        except (KeyError, TypeError, ValueError) as exc:
            error = {"code": "invalid_message", "message": f"malformed task message: {exc}"}
            outcomes.append(Outcome(task_id, FAILED, None, error, {}))
    lane.store.finish(outcomes, time.time())
    if not deliveries:
        return [], None
    taken = [d.task_id for d, _ in deliveries]
    lane.bulk.hold(lane.holder.name, taken, lane.deadline_s)
    lane.bulk.note(taken, {"state": "dispatching"}, lane.deadline_s)
    return taken, _answer_by_tenant(lane, client, deliveries, stamp)


async def _answer_by_tenant(
    lane: BulkLane,
    client: GenaiModelClient,
    deliveries: list[tuple[Delivery, InferenceRequest]],
    picked_at: float,
) -> None:
    """A job's fate (refused, failed, expired) is shared by all it carries: each tenant's tasks
    go in jobs of their own, unless the operator lets tenants share calls."""
    groups: dict[str, list[tuple[Delivery, InferenceRequest]]] = {}
    for delivery, request in deliveries:
        tenant = "" if lane.limits.share_calls_across_tenants else request.tenant
        groups.setdefault(tenant, []).append((delivery, request))
    await asyncio.gather(*(_answer(lane, client, group, picked_at) for group in groups.values()))


async def _answer(
    lane: BulkLane,
    client: GenaiModelClient,
    deliveries: list[tuple[Delivery, InferenceRequest]],
    picked_at: float,
) -> None:
    ids = [d.task_id for d, _ in deliveries]
    jobs: dict[str, str] = {}

    def on_state(job: str, state: str) -> None:
        jobs[job] = state
        lane.bulk.note(ids, {"job": job, "state": state, "jobs": dict(jobs)}, lane.deadline_s)

    backend = GenaiBatchBackend(client, lane.inline_max_bytes)
    bulk = BulkModelClient(backend, lane.poll_s, name=f"batchgate-{ids[0]}", on_state=on_state)
    retry = RetryPolicy(attempts=lane.attempts, base_s=1.0, max_s=10.0)
    engine = BatchInferenceEngine(bulk, lane.limits, retry, BULK_CALLS)
    try:
        results = await engine.run([request for _, request in deliveries])
    except Exception:
        log.exception("bulk run of %d tasks failed; they wait for their deadline", len(ids))
        return
    by_id = {d.task_id: d for d, _ in deliveries}
    outcomes = []
    for result in results:
        outcome = outcome_of(result, by_id[result.id], picked_at, len(ids), lane.prices, batch_api=True)
        if outcome.result is not None:
            outcome.result["bulk_jobs"] = list(bulk.jobs)
        outcomes.append(outcome)
    written = lane.store.finish(outcomes, time.time())
    lane.bulk.release(lane.holder.name, ids)
    log.info("bulk run of %d tasks answered in %d Gemini batch job(s)", len(written), len(bulk.jobs))
