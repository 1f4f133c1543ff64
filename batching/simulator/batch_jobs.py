"""Batch API jobs: their store, their state machine in time, and their wire shape.

Gemini's Batch API (``models/{model}:batchGenerateContent``) answers a set of requests within a
turnaround of up to a day instead of at once. The simulator keeps each job in memory and works
its state out from the clock when it is looked at (pending for the first quarter of its
turnaround, then running, then ended), so a test drives it with an explicit ``now`` and no
sleeps. The answers are composed by the caller (``batch_answers``) when a job is seen to end.

On the wire a job is a google.longrunning Operation as the SDK's ``_BatchJob_from_mldev`` reads
it: ``name`` (``batches/{id}``), ``metadata.state`` (``BATCH_STATE_*``, which the SDK renames
``JOB_STATE_*``), ``metadata.createTime``/``updateTime``/``endTime``, ``metadata.model``,
``metadata.displayName`` and ``metadata.output`` (``inlinedResponses.inlinedResponses`` or
``responsesFile``), plus ``done``, ``error`` and ``response`` as Gemini adds them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING = "BATCH_STATE_PENDING"
RUNNING = "BATCH_STATE_RUNNING"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
FAILED = "BATCH_STATE_FAILED"
CANCELLED = "BATCH_STATE_CANCELLED"
EXPIRED = "BATCH_STATE_EXPIRED"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})
#: The final state each ``batch_outcome`` forces.
OUTCOME_STATES = {"succeeded": SUCCEEDED, "failed": FAILED, "expired": EXPIRED}
#: Share of the turnaround a job spends pending before it runs.
PENDING_SHARE = 0.25
#: ``@type`` of the Operation's metadata and response, as Gemini names them.
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
#: google.rpc.Code of the HTTP statuses an item or job can fail with (``google.rpc.Status.code``
#: carries these, not HTTP codes).
RPC_CODES = {
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}


class BatchConflict(ValueError):
    """An operation the job's state forbids (cancelling a job that has ended)."""


@dataclass(frozen=True)
class BatchItem:
    """One request of a job: its GenerateContentRequest body, or why it could not be read."""

    #: The file line's ``key`` (file input), else None.
    key: str | None
    #: The inline request's ``metadata`` (echoed back with its response), else None.
    metadata: dict[str, Any] | None
    request: Any
    #: Set when the input line is not a ``{"key", "request"}`` JSON object: the item's error.
    problem: str | None = None


@dataclass
class BatchJob:
    """A job and, once it has ended, its outcome."""

    name: str
    model: str
    items: list[BatchItem]
    created: float  # monotonic seconds, for its state
    created_wall: float  # epoch seconds, for its timestamps
    turnaround_s: float
    display_name: str | None = None
    #: ``files/{id}`` of the input file, or None for inline requests.
    source_file: str | None = None
    #: Set once ended: a final state, when (wall), and the output.
    final_state: str | None = None
    ended_wall: float | None = None
    inlined_responses: list[dict[str, Any]] | None = None
    responses_file: str | None = None
    #: Per-item outcome counts, for ``batchStats``.
    succeeded_items: int = 0
    failed_items: int = 0
    error: dict[str, Any] | None = field(default=None)

    def state_at(self, now: float) -> str:
        """The job's state at monotonic ``now`` (a due job not yet ended still runs)."""
        if self.final_state is not None:
            return self.final_state
        return PENDING if now - self.created < self.turnaround_s * PENDING_SHARE else RUNNING

    def due(self, now: float) -> bool:
        """True when the turnaround is over but the job has not been ended yet."""
        return self.final_state is None and now - self.created >= self.turnaround_s

    @property
    def id(self) -> str:
        """The id after ``batches/``."""
        return self.name.removeprefix("batches/")


class BatchStore:
    """Every job since start or the last reset, by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, BatchJob] = {}

    def clear(self) -> None:
        """Forget every job (``POST /_sim/reset``)."""
        self._jobs.clear()

    def create(
        self,
        model: str,
        items: list[BatchItem],
        now: float,
        wall: float,
        turnaround_s: float,
        *,
        display_name: str | None = None,
        source_file: str | None = None,
    ) -> BatchJob:
        """Register a new pending job."""
        job = BatchJob(
            name=f"batches/{uuid.uuid4().hex[:20]}",
            model=model,
            items=items,
            created=now,
            created_wall=wall,
            turnaround_s=turnaround_s,
            display_name=display_name,
            source_file=source_file,
        )
        self._jobs[job.name] = job
        return job

    def get(self, name: str) -> BatchJob | None:
        """The job called ``name`` (``batches/`` optional), or None."""
        return self._jobs.get(name if name.startswith("batches/") else f"batches/{name}")

    def delete(self, name: str) -> bool:
        """Remove a job; False when there was none."""
        job = self.get(name)
        return job is not None and self._jobs.pop(job.name, None) is not None

    def jobs(self) -> list[BatchJob]:
        """Every job, newest first."""
        return sorted(self._jobs.values(), key=lambda job: job.created, reverse=True)

    def cancel(self, job: BatchJob, now: float, wall: float) -> None:
        """Cancel a pending or running job (no output); ``BatchConflict`` once it has ended."""
        if job.final_state is not None or job.due(now):
            state = job.final_state or "ending"
            raise BatchConflict(f"Batch {job.name} has already ended ({state}); it cannot be cancelled.")
        job.final_state, job.ended_wall = CANCELLED, wall
        job.error = rpc_status("FAILED_PRECONDITION", "The batch was cancelled.")

    @staticmethod
    def finish(
        job: BatchJob,
        outcome: str,
        wall: float,
        results: list[dict[str, Any]] | None = None,
        responses_file: str | None = None,
    ) -> None:
        """End a due job with ``outcome`` (a ``batch_outcome``); a successful one carries its
        per-item ``results`` inline (inline input) or as ``responses_file`` (file input)."""
        state = OUTCOME_STATES[outcome]
        job.final_state, job.ended_wall = state, wall
        if state == FAILED:
            job.error = rpc_status("INTERNAL", "The batch failed (simulated batch_outcome).")
        elif state == EXPIRED:
            job.error = rpc_status("DEADLINE_EXCEEDED", "The batch expired before it ran (simulated).")
        else:
            outcomes = results or []
            job.failed_items = sum(1 for result in outcomes if "error" in result)
            job.succeeded_items = len(outcomes) - job.failed_items
            if responses_file is None:
                job.inlined_responses = outcomes
            job.responses_file = responses_file


def job_body(job: BatchJob, now: float) -> dict[str, Any]:
    """The job as the Operation Gemini returns from create, get and list."""
    state = job.state_at(now)
    updated = job.ended_wall if job.ended_wall is not None else job.created_wall
    metadata: dict[str, Any] = {
        "@type": BATCH_TYPE,
        "name": job.name,
        "model": f"models/{job.model}" if not job.model.startswith("models/") else job.model,
        "state": state,
        "createTime": rfc3339(job.created_wall),
        "updateTime": rfc3339(updated),
        "batchStats": _batch_stats(job, state),
    }
    if job.display_name is not None:
        metadata["displayName"] = job.display_name
    if job.source_file is not None:
        metadata["inputConfig"] = {"fileName": job.source_file}
    if job.ended_wall is not None:
        metadata["endTime"] = rfc3339(job.ended_wall)
    output = _output(job)
    if output is not None:
        metadata["output"] = output
    body: dict[str, Any] = {"name": job.name, "metadata": metadata, "done": state in FINAL_STATES}
    if job.error is not None:
        body["error"] = job.error
    elif output is not None:
        body["response"] = {"@type": OUTPUT_TYPE, **output}
    return body


def rpc_status(status: str, message: str) -> dict[str, Any]:
    """A google.rpc.Status (``code`` is the google.rpc.Code of ``status``), as an item's or a
    job's ``error``; it has no ``details``, which the SDK's JobError types as strings."""
    return {"code": RPC_CODES.get(status, 2), "message": message}


def rfc3339(wall: float) -> str:
    """An epoch time as Google's JSON timestamps write it."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _output(job: BatchJob) -> dict[str, Any] | None:
    if job.responses_file is not None:
        return {"responsesFile": job.responses_file}
    if job.inlined_responses is not None:
        return {"inlinedResponses": {"inlinedResponses": job.inlined_responses}}
    return None


def _batch_stats(job: BatchJob, state: str) -> dict[str, str]:
    """Request counts as int64 strings, as proto3 JSON writes them."""
    total = len(job.items)
    done = job.succeeded_items + job.failed_items
    stats = {
        "requestCount": str(total),
        "pendingRequestCount": str(total - done if state != CANCELLED else 0),
    }
    if done:
        stats["successfulRequestCount"] = str(job.succeeded_items)
        stats["failedRequestCount"] = str(job.failed_items)
    return stats
