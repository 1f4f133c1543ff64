"""``process_batch`` without Celery: one outcome per task it claims, stored once, a bad message
failing only itself, a redelivery costing nothing, agents' answers stored whole (real Redis,
the worker's own runtime and engine, the simulator behind the real google-genai client)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from batchgate.settings import Settings
from batchgate.taskstore import FAILED, SUCCEEDED, TaskStore
from batching.simulator.answers import answer_for
from batching.simulator.server import SimulatorThread
from tests.conftest import stack_env
from tests.harness import http_json
from workers.batch_job import BatchContext, Delivery, process_batch
from workers.runtime import WorkerRuntime


@pytest.fixture
def ctx(redis_url: str, sim: SimulatorThread) -> BatchContext:
    settings = Settings.from_env({**stack_env(redis_url), "BATCHGATE_SIMULATOR_URL": sim.url})
    return WorkerRuntime(settings).batch_context


def deliver(store: TaskStore, requests: list[dict[str, Any]]) -> list[Delivery]:
    """Task records as the API writes them, and their messages as the broker delivers them."""
    deliveries = []
    for request in requests:
        task_id = secrets.token_hex(8)
        assert store.create(task_id, request, 1.0, tenant=str(request.get("tenant", "")))
        deliveries.append(Delivery(task_id, {"request": request, "submitted_at": 1.0}))
    return deliveries


def sim_calls(sim: SimulatorThread) -> int:
    return int(http_json("GET", f"{sim.url}/_sim/stats")[2]["calls"])


def test_every_claimed_task_gets_its_own_outcome_and_a_bad_message_fails_alone(
    ctx: BatchContext, sim: SimulatorThread
) -> None:
    prompts = [f"batch job {n} {secrets.token_hex(3)}" for n in range(5)]
    requests: list[dict[str, Any]] = [{"prompt": p, "model": "gemini-2.5-flash"} for p in prompts]
    requests.insert(2, {"prompt": ["not", "text"], "model": "gemini-2.5-flash"})
    deliveries = deliver(ctx.store, requests)
    before = sim_calls(sim)
    outcomes = {o.task_id: o for o in process_batch(deliveries, ctx)}
    assert set(outcomes) == {d.task_id for d in deliveries}
    bad = outcomes[deliveries[2].task_id]
    assert bad.status == FAILED and bad.error is not None and bad.error["code"] == "invalid_message"
    for delivery in deliveries[:2] + deliveries[3:]:
        stored = ctx.store.get(delivery.task_id)
        assert stored is not None and stored["status"] == SUCCEEDED
        assert stored["result"]["text"] == answer_for(delivery.payload["request"]["prompt"])
    assert sim_calls(sim) - before == 1  # the five good ones shared one packed call


def test_a_redelivered_message_of_an_answered_task_costs_nothing(
    ctx: BatchContext, sim: SimulatorThread
) -> None:
    (delivery,) = deliver(
        ctx.store, [{"prompt": f"once {secrets.token_hex(3)}", "model": "gemini-2.5-flash"}]
    )
    (first,) = process_batch([delivery], ctx)
    before = sim_calls(sim)
    assert process_batch([delivery, delivery], ctx) == []  # answered: not claimed again
    assert sim_calls(sim) == before and ctx.store.get(delivery.task_id)["result"] == first.result  # type: ignore[index]


def test_agents_answers_are_stored_whole(ctx: BatchContext) -> None:
    tools = [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    calling, shaped = deliver(
        ctx.store,
        [
            {
                "prompt": "find the manual",
                "model": "gemini-2.5-flash",
                "tools": tools,
                "tool_choice": "required",
            },
            {"prompt": "name this dish", "model": "gemini-2.5-flash", "response_schema": schema},
        ],
    )
    process_batch([calling, shaped], ctx)
    called = ctx.store.get(calling.task_id)
    assert called is not None and called["status"] == SUCCEEDED and called["result"]["text"] == ""
    (call,) = called["result"]["tool_calls"]
    assert call["name"] == "lookup" and "find the manual" in call["args"]["q"] and call["id"]
    answered = ctx.store.get(shaped.task_id)
    assert answered is not None and "name this dish" in json.loads(answered["result"]["text"])["title"]
