"""Locust users that behave like batchgate's real clients, and the stepped shape that drives them.

Two kinds of agent client, in the proportion ``LOADTEST_SYNC_SHARE``:

- ``PollingClient`` submits (``POST /api/v1/tasks``) and long-polls
  (``GET /api/v1/tasks/<id>?wait=10``) until the task is finished;
- ``WaitingClient`` submits and waits in one call (``POST /api/v1/task?wait=30``), polling
  only if that wait runs out.

Requests come from the shipped corpus (``loadtest/corpus.py``) with a share of verbatim
repeats (cache hits) and of non-default settings (batches must split). Besides the HTTP
requests, each task is recorded once as request type ``TASK``, name ``task end-to-end``:
submit → final status, as the client sees it (a failed task, an HTTP error or a client
time-out is a failure). A ``429``/``503`` refusal is not an error: the request is renamed
``… [rejected 429]`` (or ``503``) and counted as a success, and the user waits the
``Retry-After`` it was given. A cache hit is renamed ``… [cached]``.

Run by ``make loadtest`` (``python -m loadtest.run``), or directly:
``locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8080`` with
``LOADTEST_API_KEY`` set. Only Locust and this folder are needed (not batchgate itself).
"""

from __future__ import annotations

import itertools
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any

# The folder above this one, so that ``loadtest.*`` imports wherever the file is mounted.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import FastHttpUser, task
from locust.contrib.fasthttp import ResponseContextManager

from loadtest.corpus import build_request
from loadtest.settings import LoadSettings
from loadtest.shape import E2E_NAME, E2E_TYPE, SUBMIT_NAMES, SteppedShape

SETTINGS = LoadSettings.from_env()
FINAL = ("succeeded", "failed")
POLL_NAME = "GET /api/v1/tasks/[id]?wait=10"
POLL_WAIT_S = 10.0
#: A Retry-After longer than this is cut short, so a user does not sleep out a whole step.
MAX_BACKOFF_S = 10.0
#: Unique requests carry ``<run tag>-<n>``: distinct within a run and from earlier runs' cache entries.
RUN_TAG = secrets.token_hex(4)
_refs = itertools.count()

__all__ = ["PollingClient", "SteppedShape", "WaitingClient"]


class TaskFailed(Exception):
    """The task did not end in ``succeeded`` as the client saw it."""


class AgentClient(FastHttpUser):
    """The common part of both clients: build a request, finish a task, record it."""

    abstract = True
    connection_timeout = 10.0
    #: Longer than the longest server-side wait (30 s) plus nginx's margin.
    network_timeout = 60.0

    def wait_time(self) -> float:
        return random.uniform(0.0, 2.0 * SETTINGS.think_s)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.headers = {"X-API-Key": SETTINGS.api_key} if SETTINGS.api_key else {}

    def run_task(self, path: str, name: str) -> None:
        """Submit one task on ``path`` and follow it to its end; record it end to end."""
        _, body = build_request(
            self.rng, SETTINGS.repeat_share, SETTINGS.settings_share, f"{RUN_TAG}-{next(_refs)}"
        )
        started = time.perf_counter()
        deadline = started + SETTINGS.task_timeout_s
        try:
            with self.client.post(path, json=body, headers=self.headers, name=name, catch_response=True) as r:
                outcome = self._judge_submit(r)
            if isinstance(outcome, float):  # refused: wait what we were told, then the next task
                time.sleep(min(outcome, MAX_BACKOFF_S))
                return
            if isinstance(outcome, str):
                self._follow(outcome, deadline)
            else:
                self._check_final(outcome)
        except TaskFailed as exc:
            self._record(started, exc)
        else:
            self._record(started, None)

    def _judge_submit(self, r: ResponseContextManager) -> float | str | dict[str, Any]:
        """Retry-After seconds if refused, else the id to poll or the finished task."""
        if r.status_code in (429, 503):
            self._rename(r, f"[rejected {r.status_code}]")
            r.success()
            return _seconds(r.headers.get("Retry-After") if r.headers else None)
        if r.status_code not in (200, 202):
            r.failure(f"HTTP {r.status_code}: {_text(r)[:200]}")
            raise TaskFailed(f"submit: HTTP {r.status_code}")
        try:
            task_body = r.json()
            task_id = str(task_body["id"])
        except Exception as exc:
            r.failure(f"not a task: {_text(r)[:200]}")
            raise TaskFailed("submit: not a task") from exc
        if task_body.get("status") in FINAL:
            if task_body.get("cached"):
                self._rename(r, "[cached]")
            return dict(task_body)
        return task_id

    def _follow(self, task_id: str, deadline: float) -> None:
        """Long-poll the task until it is finished or the client's patience runs out."""
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TaskFailed(f"no final status after {SETTINGS.task_timeout_s:g} s")
            wait = min(POLL_WAIT_S, max(1.0, remaining))
            with self.client.get(
                f"/api/v1/tasks/{task_id}?wait={wait:g}",
                headers=self.headers,
                name=POLL_NAME,
                catch_response=True,
            ) as r:
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}: {_text(r)[:200]}")
                    raise TaskFailed(f"poll: HTTP {r.status_code}")
                try:
                    task_body = dict(r.json())
                except Exception as exc:
                    r.failure(f"not a task: {_text(r)[:200]}")
                    raise TaskFailed("poll: not a task") from exc
            if task_body.get("status") in FINAL:
                self._check_final(task_body)
                return

    @staticmethod
    def _check_final(task_body: dict[str, Any]) -> None:
        if task_body.get("status") != "succeeded":
            error = task_body.get("error") or {}
            raise TaskFailed(f"task failed: {error.get('code', 'unknown')}")

    def _record(self, started: float, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type=E2E_TYPE,
            name=E2E_NAME,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exc,
            context={},
        )

    @staticmethod
    def _rename(r: ResponseContextManager, mark: str) -> None:
        """Report this request under ``<name> <mark>``: its own row in Locust's stats."""
        r.request_meta["name"] = f"{r.request_meta['name']} {mark}"


class PollingClient(AgentClient):
    """Submit, then long-poll until finished (the asynchronous API)."""

    weight = max(0, round((1.0 - SETTINGS.sync_share) * 100))

    @task
    def submit_then_poll(self) -> None:
        self.run_task("/api/v1/tasks", SUBMIT_NAMES[0])


class WaitingClient(AgentClient):
    """Submit and wait in one call (the synchronous API)."""

    weight = max(0, round(SETTINGS.sync_share * 100))

    @task
    def submit_and_wait(self) -> None:
        self.run_task("/api/v1/task?wait=30", SUBMIT_NAMES[1])


def _seconds(value: object) -> float:
    """A Retry-After header in seconds (1 when missing or not a number)."""
    try:
        return max(0.0, float(str(value))) if value else 1.0
    except ValueError:
        return 1.0


def _text(r: ResponseContextManager) -> str:
    try:
        return r.text or ""
    except Exception:
        return ""
