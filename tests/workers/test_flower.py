"""Flower shows every buffered request as a task: its state, runtime and a safe view of its arguments.

celery-batches sends no task events; the batch consumer does (``workers.task_events``).
A real Redis, simulator, worker (``-E``), API and Flower, each its own process.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from batchgate.taskstore import FAILED, SUCCEEDED, Outcome
from tests.clients import submit_and_collect
from tests.conftest import Stack
from tests.harness import http_json, start_flower, wait_until
from workers import task_events

FINAL_STATES = frozenset({"SUCCESS", "FAILURE"})


@dataclass(frozen=True)
class Flower:
    url: str
    auth: str

    def get(self, path: str, auth: str | None = None) -> tuple[int, Any]:
        token = base64.b64encode((auth or self.auth).encode()).decode()
        status, _, body = http_json("GET", f"{self.url}{path}", headers={"Authorization": f"Basic {token}"})
        return status, body

    def tasks(self) -> dict[str, dict[str, Any]]:
        status, body = self.get("/api/tasks?limit=1000")
        assert status == 200, body
        return dict(body)


def worker_events_arrive(url: str) -> bool:
    """Flower has heard a worker's heartbeat: its event receiver is subscribed."""
    status, _, body = http_json("GET", f"{url}/metrics")
    return status == 200 and any(
        line.startswith("flower_worker_online{") and line.endswith(" 1.0") for line in str(body).splitlines()
    )


@pytest.fixture(scope="module")
def flower(stack: Stack) -> Iterator[Flower]:
    auth = f"tester:{secrets.token_urlsafe(12)}"
    proc, url = start_flower(stack.logs_dir, stack.env, auth)
    try:
        # Events travel over Redis pub/sub and are lost while nobody listens: only send
        # work once Flower hears the worker (heartbeats come every 2 s).
        wait_until(lambda: worker_events_arrive(url), 30, "Flower to receive the worker's events")
        yield Flower(url, auth)
    finally:
        proc.stop()


def test_every_request_shows_in_flower_with_state_runtime_and_safe_arguments(
    stack: Stack, flower: Flower
) -> None:
    tag = secrets.token_hex(6)  # in every prompt, system text and context: must never show
    bodies: list[dict[str, Any]] = [
        {"prompt": f"flower {tag} question {i}: what is {i} cubed?", "cache": False} for i in range(200)
    ]
    for body in bodies[::10]:
        body.update(system=f"system {tag}: be brief", context={"note": f"context {tag}"})
    for body in bodies[5::10]:
        body.update(strategy="concurrent", model="gemini-2.5-pro")
    bodies.append({"prompt": f"flower {tag} poisoned [[sim:fail]]", "cache": False})

    run = submit_and_collect(stack.api, bodies, api_key=stack.api_key)
    assert None not in run.ids, run.failures
    assert [b and b["status"] for b in run.bodies] == ["succeeded"] * 200 + ["failed"]
    ids = [str(i) for i in run.ids]

    seen: dict[str, dict[str, Any] | None] = {}

    def all_finished() -> bool:
        tasks = flower.tasks()
        seen.update({i: tasks.get(i) for i in ids})
        return all(t is not None and t["state"] in FINAL_STATES for t in seen.values())

    try:
        wait_until(all_finished, 30, "Flower to show every request finished", interval=0.2)
    except TimeoutError:
        states = [t["state"] if t else "missing" for t in seen.values()]
        pytest.fail(f"Flower's view after 30 s: { {s: states.count(s) for s in set(states)} }")

    tasks = {i: t for i, t in seen.items() if t is not None}
    for body, task_id in zip(bodies[:200], ids[:200], strict=True):
        task = tasks[task_id]
        assert task["state"] == "SUCCESS", task
        assert task["name"] == "batchgate.infer" and task["worker"]
        assert task["runtime"] > 0 and task["received"] <= task["started"] <= task["succeeded"], task
        assert task["result"].startswith("ok ") and task["result"].endswith(" chars"), task
        assert f"prompt_chars={len(body['prompt'])}" in task["kwargs"], task
    assert "system_chars=" in tasks[ids[0]]["kwargs"] and "context=yes" in tasks[ids[0]]["kwargs"]
    assert "model=gemini-2.5-pro, strategy=concurrent" in tasks[ids[5]]["kwargs"]

    poisoned = tasks[ids[200]]
    assert poisoned["state"] == "FAILURE" and poisoned["failed"] >= poisoned["started"], poisoned
    assert poisoned["exception"].startswith("model_unavailable") and poisoned["runtime"] > 0, poisoned
    assert not poisoned["traceback"]

    for task in tasks.values():
        shown = json.dumps(task)
        assert tag not in shown, f"request text leaked into Flower: {shown}"
        assert stack.api_key not in shown


def test_flower_api_requires_credentials(flower: Flower) -> None:
    status, _, _ = http_json("GET", f"{flower.url}/api/tasks")
    assert status == 401
    status, _ = flower.get("/api/tasks", auth="tester:wrong-password")
    assert status == 401
    assert flower.get("/api/tasks?limit=1")[0] == 200


def test_the_arguments_summary_holds_only_lengths_and_validated_names() -> None:
    body = {"prompt": "secret prompt", "system": "secret system", "context": {"k": "secret"}}
    shown = task_events.describe_kwargs({"request": {**body, "model": "gemini-2.5-pro", "strategy": "pack"}})
    assert shown == "prompt_chars=13, system_chars=13, context=yes, model=gemini-2.5-pro, strategy=pack"
    odd = task_events.describe_kwargs(
        {"request": {"prompt": 7, "model": "secret words", "strategy": "secret"}}
    )
    assert odd == "prompt_chars=?, model=?, strategy=?"
    assert task_events.describe_kwargs({"request": "secret"}) == task_events.UNREADABLE
    assert task_events.describe_kwargs(None) == task_events.UNREADABLE


def test_each_request_of_a_batch_finishes_once_even_without_an_outcome() -> None:
    answer = {"text": "secret answer", "model": "m", "usage": {}}
    outcomes = [
        Outcome("a", SUCCEEDED, answer, None, {}),
        Outcome("b", FAILED, None, {"code": "model_unavailable", "message": "HTTP 500 " + "x" * 500}, {}),
    ]
    events = task_events.finished(["a", "b", "c", "a"], outcomes, runtime=0.25, now=10.0)
    assert [(e.type, e.fields["uuid"]) for e in events] == [
        ("task-succeeded", "a"),
        ("task-failed", "b"),
        ("task-succeeded", "c"),
    ]
    assert events[0].fields == {"uuid": "a", "timestamp": 10.0, "result": "ok 13 chars", "runtime": 0.25}
    assert events[1].fields["exception"].startswith("model_unavailable: HTTP 500")
    assert len(events[1].fields["exception"]) == task_events.MAX_ERROR_CHARS
    assert events[2].fields["result"] == task_events.SKIPPED
