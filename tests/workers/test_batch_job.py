"""A batch's answers outlive a Redis outage: kept and stored when Redis is back, and never
reported stored (so never acknowledged) when it stays away (real Redis, simulator, engine)."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from batchgate.settings import Settings, SimulatorSettings
from batchgate.taskstore import TaskStore
from batching.simulator.answers import answer_for
from batching.simulator.server import start_in_thread
from batching.types import InferenceRequest, InferenceResult
from stack.ports import free_port
from tests.conftest import stack_env
from tests.harness import wait_until
from workers.batch_job import BatchContext, Delivery, ResultsNotStored, process_batch
from workers.runtime import WorkerRuntime


class RestartableRedis:
    """A redis-server with an append-only file, so a restart keeps what was written."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._folder = folder
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self._folder)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(lambda: redis.Redis.from_url(self.url).ping(), 10, "redis")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[tuple[RestartableRedis, BatchContext, TaskStore]]:
    server = RestartableRedis(tmp_path)
    server.start()
    sim = start_in_thread(SimulatorSettings(overhead_ms=5.0), host="127.0.0.1", port=free_port())
    settings = Settings.from_env({**stack_env(server.url), "BATCHGATE_SIMULATOR_URL": sim.url})
    runtime = WorkerRuntime(settings)
    # The store's client without the runtime's own retries: each attempt fails at once, so the
    # batch's patience (not the client's) is what is tested.
    store = TaskStore(
        redis.Redis.from_url(server.url, decode_responses=True), settings.broker.key_prefix, 600
    )
    ctx = dataclasses.replace(
        runtime.batch_context, store=store, cache=None, metrics=None, conversations=None
    )
    try:
        yield server, ctx, store
    finally:
        server.stop()
        sim.stop()


def _batch(store: TaskStore, n: int) -> list[Delivery]:
    deliveries = []
    for i in range(n):
        task_id = secrets.token_hex(8)
        request = {"prompt": f"outage question {i} {task_id}", "model": "gemini-2.5-flash"}
        assert store.create(task_id, request, 1.0)
        deliveries.append(Delivery(task_id, {"request": request, "submitted_at": 1.0}))
    return deliveries


def _redis_dies_after_the_answers(
    ctx: BatchContext, server: RestartableRedis, back_after_s: float
) -> BatchContext:
    def run_engine(requests: list[InferenceRequest]) -> list[InferenceResult]:
        results = ctx.run_engine(requests)
        server.stop()  # the answers are in hand; Redis is gone
        if back_after_s >= 0:
            threading.Timer(back_after_s, server.start).start()
        return results

    return dataclasses.replace(ctx, run_engine=run_engine)


def test_answers_computed_during_an_outage_are_stored_when_redis_is_back(outage) -> None:  # type: ignore[no-untyped-def]
    server, ctx, store = outage
    deliveries = _batch(store, 3)
    outcomes = process_batch(
        deliveries, dataclasses.replace(_redis_dies_after_the_answers(ctx, server, 3.0), patience_s=30)
    )
    assert [o.status for o in outcomes] == ["succeeded"] * 3
    for delivery in deliveries:
        record = store.get(delivery.task_id)
        assert record is not None and record["status"] == "succeeded"
        assert record["result"]["text"] == answer_for(delivery.payload["request"]["prompt"])


def test_answers_that_cannot_be_stored_are_never_reported_stored(outage) -> None:  # type: ignore[no-untyped-def]
    server, ctx, store = outage
    deliveries = _batch(store, 2)
    with pytest.raises(ResultsNotStored):
        process_batch(
            deliveries, dataclasses.replace(_redis_dies_after_the_answers(ctx, server, -1), patience_s=2)
        )
    server.start()
    # Nothing was written: the tasks are still the claimed (running) ones their redelivery will
    # answer; the caller (the Celery task) does not acknowledge their messages.
    assert {store.get(d.task_id)["status"] for d in deliveries} == {"running"}  # type: ignore[index]
