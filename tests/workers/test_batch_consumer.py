"""The batch consumer (``WindowedBatches``) deciding when a batch leaves and what becomes of it.

Driven as celery-batches' own unit tests drive a ``Batches`` task: its ``Strategy`` built on a
stand-in for the worker's consumer, here with a timer the test fires and a clock the test sets
(no sleeps). Everything else is real: the worker's own ``infer`` task (``workers.tasks``), task
messages published and taken from a real Redis queue, ``process_batch`` and the engine, the
simulator behind the google-genai client.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import celery._state
import pytest
from kombu import Connection, Queue
from kombu.message import Message
from vine import promise

import workers.tasks
from batchgate.broker import INFER_TASK, Publisher
from batchgate.settings import Settings
from batchgate.taskstore import FAILED, QUEUED, SUCCEEDED
from batching.call_costs import PRIOR_FIXED_S, PRIOR_PER_ITEM_S
from batching.simulator.answers import answer_for
from batching.simulator.server import SimulatorThread
from tests.conftest import stack_env
from tests.harness import http_json
from tests.workers.batch_consumer_helpers import Clock, StandInConsumer
from workers.app import create_celery
from workers.batch_job import BatchContext, Delivery, ResultsNotStored, process_batch
from workers.leases import LeaseBook
from workers.runtime import WorkerRuntime
from workers.tasks import register_tasks

MODEL = "gemini-2.5-flash"
#: celery-batches' own repeating timer, pushed out of the way (workers.batch_consumer).
A_DAY = 24 * 3600.0


@dataclass
class Bench:
    """One worker's consumer on its own queue, and what it handed to ``process_batch``."""

    settings: Settings
    runtime: WorkerRuntime
    task: Any
    clock: Clock
    consumer: StandInConsumer
    publisher: Publisher
    connection: Connection
    handler: Callable[..., None] = field(init=False)
    queue: Queue = field(init=False)
    batches: list[list[Delivery]] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.handler = self.task.Strategy(self.task, self.task.app, self.consumer)
        self.queue = Queue(self.settings.broker.queue, channel=self.connection.channel())

    def send(self, *requests: dict[str, Any], at: float) -> list[str]:
        """Publish ``requests`` as the API does; the consumer receives them together at ``at``."""
        self.clock.now = at
        ids = []
        for request in requests:
            task_id = secrets.token_hex(8)
            assert self.runtime.store.create(task_id, request, 1.0)
            self.publisher.publish(task_id, request, 1.0)
            ids.append(task_id)
        for _ in ids:
            message = self.queue.get(no_ack=False, accept=["json"])
            assert message is not None
            self.messages[message.headers["id"]] = message
            # As celery's consumer hands a message to a task's strategy (on_task_received).
            ack = promise(self.consumer.call_soon, (message.ack_log_error,))
            reject = promise(self.consumer.call_soon, (message.reject_log_error,))
            self.handler(message, None, ack, reject, set())
            self.consumer.run_soon()
        return ids

    def fire(self, at: float) -> None:
        self.clock.now = at
        self.consumer.timer.fire()
        self.consumer.run_soon()

    def run_held(self) -> None:
        """Let the batches held in the pool finish; the event loop then takes their ends."""
        while self.consumer.pool.held:
            self.consumer.pool.held.pop(0)()
            self.consumer.run_soon()

    def batch_ids(self) -> list[list[str]]:
        return [[d.task_id for d in batch] for batch in self.batches]

    def status(self, task_id: str) -> dict[str, Any]:
        record = self.runtime.store.get(task_id)
        assert record is not None
        return record

    def settled(self, task_id: str) -> str | None:
        """How its message was settled with the broker (kombu's ``ACK``, or ``REJECTED`` when given
        back to the queue) once Redis no longer holds it unacknowledged; None while it does."""
        message = self.messages[task_id]
        if self.runtime.redis.hexists(message.channel.qos.unacked_key, message.delivery_tag):
            return None
        return str(message._state)


def ask(prompt: Any) -> dict[str, Any]:
    return {"prompt": prompt, "model": MODEL}


def sim_calls(sim: SimulatorThread) -> int:
    return int(http_json("GET", f"{sim.url}/_sim/stats")[2]["calls"])


@pytest.fixture
def bench(
    redis_url: str, sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Bench]]:
    """A consumer built on ``stack_env(redis_url, **env)``, in window mode unless ``env`` names
    another; ``process_batch`` is watched, not replaced."""
    built: list[Bench] = []
    # ``@app.task`` also registers a task for every Celery app finalized later in this process
    # (``shared=True``): each consumer's task stays with its own app and is forgotten after.
    finalizers = set(celery._state._on_app_finalizers)

    def build(**env: str) -> Bench:
        monkeypatch.setattr(celery._state, "_on_app_finalizers", set(finalizers))
        env = {"BATCHGATE_FLUSH_MODE": "window", **env}
        settings = Settings.from_env({**stack_env(redis_url, **env), "BATCHGATE_SIMULATOR_URL": sim.url})
        app = create_celery(settings)
        runtime = WorkerRuntime(settings)
        register_tasks(app, runtime)
        task = app.tasks[INFER_TASK]
        assert task.leases is runtime.leases  # this runtime's task, not one shared by another app
        clock = Clock()
        task.clock = clock
        bench = Bench(
            settings,
            runtime,
            task,
            clock,
            StandInConsumer(),
            Publisher(app, settings),
            app.connection_for_read(),
        )

        def watched(deliveries: list[Delivery], ctx: BatchContext) -> Any:
            bench.batches.append(list(deliveries))
            return process_batch(deliveries, ctx)

        monkeypatch.setattr(workers.tasks, "process_batch", watched)
        built.append(bench)
        return bench

    yield build
    for made in built:
        made.connection.release()
        made.task.app.close()


def test_a_full_batch_leaves_at_once_without_waiting_for_its_window(bench: Callable[..., Bench]) -> None:
    b = bench(BATCHGATE_BATCH_MAX_SIZE="3", BATCHGATE_BATCH_WINDOW_MS="60000")
    first = b.send(ask("size one"), ask("size two"), at=100.0)
    assert b.batches == [] and b.consumer.timer.pending() == [60.0]
    third = b.send(ask("size three"), at=100.0)  # the clock never moved
    assert b.batch_ids() == [first + third]
    assert b.consumer.timer.pending() == []  # the window's wake-up is called off
    fourth = b.send(ask("size four"), at=100.0)
    assert len(b.batches) == 1 and b.consumer.timer.pending() == [60.0]  # a new batch gathers
    for task_id in first + third:
        assert b.status(task_id)["status"] == SUCCEEDED and b.settled(task_id) == "ACK"
    assert b.status(fourth[0])["status"] == QUEUED and b.settled(fourth[0]) is None  # still held


def test_a_batch_leaves_when_the_window_from_its_first_request_ends(bench: Callable[..., Bench]) -> None:
    b = bench(BATCHGATE_BATCH_MAX_SIZE="32", BATCHGATE_BATCH_WINDOW_MS="2000")
    early = b.send(ask("window one"), at=100.0)
    timer = b.consumer.timer
    # celery-batches' own triggers are off: its repeating timer is pushed out to a day.
    assert [w.delay for w in timer.wakeups if w.repeats] == [A_DAY]
    assert timer.pending() == [2.0]
    late = b.send(ask("window two"), at=101.0)
    assert timer.pending() == [2.0] and b.batches == []  # one wake-up per batch, from its first
    b.fire(at=101.5)  # a timer that wakes early: the batch waits only what remains
    assert b.batches == [] and timer.pending() == [0.5]
    b.fire(at=102.0)
    assert b.batch_ids() == [early + late]
    for task_id, prompt in zip(early + late, ["window one", "window two"], strict=True):
        assert b.status(task_id)["result"]["text"] == answer_for(prompt)
    b.send(ask("window three"), at=110.0)
    assert timer.pending() == [2.0]  # the next batch's window starts at its own first request


def test_requests_arriving_together_reach_process_batch_as_one_batch(
    bench: Callable[..., Bench], sim: SimulatorThread
) -> None:
    b = bench(BATCHGATE_BATCH_MAX_SIZE="5", BATCHGATE_BATCH_WINDOW_MS="60000")
    prompts = [f"together {n} {secrets.token_hex(3)}" for n in range(5)]
    before = sim_calls(sim)
    ids = b.send(*map(ask, prompts), at=100.0)
    ((*batch,),) = b.batches
    assert [d.task_id for d in batch] == ids  # in arrival order
    assert all(d.received_at is not None for d in batch) and not b.task.arrivals
    assert sim_calls(sim) - before == 1  # and one packed model call
    for task_id, prompt in zip(ids, prompts, strict=True):
        record = b.status(task_id)
        assert record["status"] == SUCCEEDED and record["result"]["text"] == answer_for(prompt)
        assert record["timings"]["batch_size"] == 5 and b.settled(task_id) == "ACK"


def test_a_failing_item_fails_only_itself(bench: Callable[..., Bench]) -> None:
    b = bench(BATCHGATE_BATCH_MAX_SIZE="4", BATCHGATE_BATCH_WINDOW_MS="60000")
    good = [f"neighbour {n} {secrets.token_hex(3)}" for n in range(3)]
    ids = b.send(ask(good[0]), ask(["not", "text"]), ask(good[1]), ask(good[2]), at=100.0)
    assert b.batch_ids() == [ids]
    bad = b.status(ids[1])
    assert bad["status"] == FAILED and bad["error"]["code"] == "invalid_message"
    for task_id, prompt in zip(ids[:1] + ids[2:], good, strict=True):
        record = b.status(task_id)
        assert record["status"] == SUCCEEDED and record["result"]["text"] == answer_for(prompt)
    assert all(b.settled(task_id) == "ACK" for task_id in ids)  # the failed one is answered: not redelivered


def test_a_batch_whose_answers_cannot_be_stored_goes_back_to_the_queue(
    bench: Callable[..., Bench], monkeypatch: pytest.MonkeyPatch
) -> None:
    b = bench(BATCHGATE_BATCH_MAX_SIZE="2", BATCHGATE_BATCH_WINDOW_MS="60000")

    def unreachable(deliveries: list[Delivery], ctx: BatchContext) -> Any:
        b.batches.append(list(deliveries))
        raise ResultsNotStored("redis is unreachable")

    monkeypatch.setattr(workers.tasks, "process_batch", unreachable)
    ids = b.send(ask("given back one"), ask("given back two"), at=100.0)
    assert b.batch_ids() == [ids]
    # Not acknowledged but given back: first in line on the queue, no longer held unacknowledged.
    queued = b.runtime.redis.lrange(b.settings.broker.queue, 0, -1)
    assert sorted(json.loads(raw)["headers"]["id"] for raw in queued) == sorted(ids)
    assert all(b.settled(task_id) == "REJECTED" for task_id in ids)
    assert all(b.status(task_id)["status"] == QUEUED for task_id in ids)


def test_adaptive_mode_sends_the_next_batch_when_a_running_one_finishes(bench: Callable[..., Bench]) -> None:
    b = bench(BATCHGATE_FLUSH_MODE="adaptive", BATCHGATE_ADAPTIVE_SLOTS="1", BATCHGATE_BATCH_MAX_SIZE="32")
    b.consumer.pool.hold = True
    alone = b.send(ask("adaptive first"), at=100.0)
    assert b.consumer.pool.held and b.consumer.timer.pending() == []  # a free slot: it left at once
    rest = b.send(ask("adaptive second"), ask("adaptive third"), at=100.25)
    assert len(b.consumer.pool.held) == 1  # the one slot is taken: they gather
    assert b.consumer.timer.pending() == [5.0]  # at most the safety wait, from the first of them
    b.run_held()  # the first batch ends; its slot frees, the gathered two leave together
    assert b.batch_ids() == [alone, rest] and b.consumer.timer.pending() == []
    for task_id in alone + rest:
        assert b.status(task_id)["status"] == SUCCEEDED and b.settled(task_id) == "ACK"


def test_adaptive_mode_on_a_busy_cpu_gathers_until_the_wait_pays_for_a_call(
    bench: Callable[..., Bench],
) -> None:
    b = bench(BATCHGATE_FLUSH_MODE="adaptive", BATCHGATE_BATCH_WINDOW_MS="100")
    b.task.busy.value = 0.5  # one more call costs its fixed CPU cost in waiting
    b.task.arrival_rate.arrived(99.9, count=2000)  # a busy stream: newcomers are expected soon
    fixed = b.task.call_costs.fixed_s
    first = b.send(ask("busy first"), at=100.0)
    assert b.batches == [] and b.consumer.timer.pending() == [pytest.approx(fixed)]
    rest = b.send(ask("busy second"), at=100.0 + fixed / 4)  # summed wait now fixed / 4: not yet
    # The newcomer shares what is still owed: the wake-up moves earlier, to 100 + 5/8 fixed.
    assert b.batches == [] and b.consumer.timer.pending() == [pytest.approx(3 * fixed / 8)]
    b.fire(at=100.0 + 5 * fixed / 8 + 1e-9)
    assert b.batch_ids() == [first + rest]
    # Measured, the batch taught the cost model: its fit now rests on what the batch took.
    assert b.task.call_costs.fit() != (PRIOR_FIXED_S, PRIOR_PER_ITEM_S)


def test_apply_runs_one_request_as_a_batch_of_one_without_a_worker(bench: Callable[..., Bench]) -> None:
    b = bench()
    task_id, request = secrets.token_hex(8), ask("applied alone")
    assert b.runtime.store.create(task_id, request, 1.0)
    # celery-batches' Batches.apply: the task runs a batch of one, synchronously, in this thread.
    result = b.task.apply(kwargs={"request": request, "submitted_at": 1.0}, task_id=task_id)
    assert result.successful() and b.batch_ids() == [[task_id]]
    assert b.status(task_id)["result"]["text"] == answer_for("applied alone")


def test_the_adaptive_slots_are_the_clusters_shared_by_the_live_workers(bench: Callable[..., Bench]) -> None:
    b = bench(BATCHGATE_FLUSH_MODE="adaptive", BATCHGATE_ADAPTIVE_SLOTS="2", BATCHGATE_BATCH_MAX_SIZE="32")
    leases = b.runtime.leases
    other = LeaseBook(b.runtime.redis, b.settings.broker.key_prefix, "another-worker", leases.lapse_s)
    other.beat(time.time())  # a second worker process is alive
    leases.beat(time.time())
    assert leases.live_holders == 2
    b.consumer.pool.hold = True
    alone = b.send(ask("shared slots first"), at=100.0)
    rest = b.send(ask("shared slots second"), at=100.25)
    assert len(b.consumer.pool.held) == 1  # its share of two slots is one: the second gathers
    leases.beat(time.time() + leases.lapse_s + 1)  # the other went silent: both slots are this one's
    assert leases.live_holders == 1
    more = b.send(ask("shared slots third"), at=100.5)
    assert len(b.consumer.pool.held) == 2
    b.run_held()
    assert b.batch_ids() == [alone, rest + more]
