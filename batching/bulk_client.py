"""A model client that answers calls through Gemini's Batch API: half the price, hours not seconds.

The batch engine runs over it unchanged, so a bulk task is packed (per tenant), split back
and re-asked exactly as an interactive one. Each ``generate`` joins the job being gathered:
calls that arrive within ``linger_s`` of the first go in one job per model (the engine
issues a batch's calls together). The job is polled every ``poll_s`` until it ends; each
call then gets its own answer, or its request's error. A job that fails, expires or is
cancelled fails its calls with a retryable ``bulk_job_<state>`` error, and so does a request
the job could not answer (unless Gemini found it malformed), so the engine's retry policy
sends them again in a later job, up to its attempts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from batching.types import ModelCall, ModelCallError, ModelReply

SUCCEEDED = "JOB_STATE_SUCCEEDED"
#: Job states after which nothing changes, as the SDK names them.
FINAL_STATES = frozenset({SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})


@dataclass(frozen=True)
class BatchStatus:
    """A job as last seen: its state, and once it succeeded, each call's reply or error by its
    key (the call's position in the job, as text)."""

    state: str
    replies: Mapping[str, ModelReply | ModelCallError] | None = None

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


class BatchBackend(Protocol):
    """Where jobs are created and looked at (``batching.genai_batches.GenaiBatchBackend``)."""

    async def create(self, model: str, calls: list[ModelCall], display_name: str) -> str: ...

    async def get(self, name: str) -> BatchStatus: ...


#: Told (job name, state) when a job is created and whenever its state changes.
StateSink = Callable[[str, str], None]


class BulkModelClient:
    """A ``ModelClient`` whose calls are answered by Batch API jobs."""

    def __init__(
        self,
        backend: BatchBackend,
        poll_s: float,
        *,
        name: str = "batchgate",
        on_state: StateSink | None = None,
        linger_s: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._backend = backend
        self._poll_s = poll_s
        self._name = name
        self._on_state = on_state or (lambda _job, _state: None)
        self._linger_s = linger_s
        self._sleep = sleep
        self._gathering: list[tuple[ModelCall, asyncio.Future[ModelReply]]] = []
        self._gatherer: asyncio.Future[None] | None = None
        self._jobs: set[asyncio.Future[None]] = set()
        #: Names of the jobs created, in order.
        self.jobs: list[str] = []

    async def generate(self, call: ModelCall) -> ModelReply:
        future: asyncio.Future[ModelReply] = asyncio.get_running_loop().create_future()
        self._gathering.append((call, future))
        if self._gatherer is None:
            self._gatherer = asyncio.ensure_future(self._gather())
        return await future

    async def generate_stream(self, call: ModelCall, on_text: Callable[[str], None]) -> ModelReply:
        raise ModelCallError("bulk_stream_unsupported", "a bulk task cannot stream its answer")

    async def aclose(self) -> None:
        """Nothing of its own to close: the backend's client belongs to the worker."""

    async def _gather(self) -> None:
        await self._sleep(self._linger_s)
        gathered, self._gathering, self._gatherer = self._gathering, [], None
        by_model: dict[str, list[tuple[ModelCall, asyncio.Future[ModelReply]]]] = {}
        for call, future in gathered:
            by_model.setdefault(call.model, []).append((call, future))
        for model, calls in by_model.items():
            job = asyncio.ensure_future(self._run_job(model, calls))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _run_job(self, model: str, calls: list[tuple[ModelCall, asyncio.Future[ModelReply]]]) -> None:
        try:
            name = await self._backend.create(
                model, [call for call, _ in calls], f"{self._name}-{len(self.jobs)}"
            )
        except ModelCallError as exc:
            _fail(calls, exc)
            return
        except Exception as exc:  # an SDK or transport surprise fails these calls only
            _fail(calls, ModelCallError("model_error", f"{type(exc).__name__}: {exc}", retryable=True))
            return
        self.jobs.append(name)
        state = "JOB_STATE_PENDING"
        self._on_state(name, state)
        while True:
            await self._sleep(self._poll_s)
            try:
                status = await self._backend.get(name)
            except ModelCallError:
                continue  # the job goes on without us: look again at the next poll
            if status.state != state:
                state = status.state
                self._on_state(name, state)
            if status.done:
                break
        if status.state != SUCCEEDED or status.replies is None:
            ended = status.state.removeprefix("JOB_STATE_").lower()
            why = f"Gemini batch job {name} ended {status.state}"
            _fail(calls, ModelCallError(f"bulk_job_{ended}", why, retryable=True))
            return
        missing = ModelCallError(
            "bulk_item_missing", f"batch job {name} returned no answer for it", retryable=True
        )
        for n, (_, future) in enumerate(calls):
            reply = status.replies.get(str(n), missing)
            if future.done():
                continue
            if isinstance(reply, ModelCallError):
                future.set_exception(reply)
            else:
                future.set_result(reply)


def _fail(calls: list[tuple[ModelCall, asyncio.Future[ModelReply]]], error: ModelCallError) -> None:
    for _, future in calls:
        if not future.done():
            future.set_exception(error)
