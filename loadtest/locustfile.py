"""Locust users that behave like batchgate's real clients, and the stepped shape that drives them.

Two kinds of agent client, in the proportion ``--sync-share`` (``LOADTEST_SYNC_SHARE``):

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

The options (``--think-s``, ``--sync-share``, ``--steps`` …) are Locust's own: registered on
its parser (``init_command_line_parser``), each also read from its ``LOADTEST_*`` variable
or a Locust config file, and read back from ``environment.parsed_options``
(``loadtest/settings.py``). ``python -m loadtest.run --help`` lists them: Locust prints its
own ``--help`` before it imports a locustfile (locustio/locust#2917). The clients' weights
follow ``--sync-share``, set before any user spawns.

Run by ``make loadtest`` (``python -m loadtest.run``), or directly:
``locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8080 --think-s 1`` with
``LOADTEST_API_KEY`` (or ``--api-key``) set. Only Locust and this folder are needed (not
batchgate itself).
"""

from __future__ import annotations

import itertools
import random
import secrets
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

# The folder above this one, so that ``loadtest.*`` imports wherever the file is mounted.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import FastHttpUser, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

from loadtest.corpus import build_request
from loadtest.settings import LoadSettings, LoadSettingsError, add_locust_options
from loadtest.shape import E2E_NAME, E2E_TYPE, SUBMIT_NAMES, SteppedShape

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
    #: Set from Locust's parsed options by ``configure`` before any user starts.
    settings: ClassVar[LoadSettings] = LoadSettings()
    connection_timeout = 10.0
    #: Longer than the longest server-side wait (30 s) plus nginx's margin.
    network_timeout = 60.0

    def wait_time(self) -> float:
        return random.uniform(0.0, 2.0 * self.settings.think_s)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.headers = {"X-API-Key": self.settings.api_key} if self.settings.api_key else {}

    def run_task(self, path: str, name: str) -> None:
        """Submit one task on ``path`` and follow it to its end; record it end to end."""
        _, body = build_request(
            self.rng, self.settings.repeat_share, self.settings.settings_share, f"{RUN_TAG}-{next(_refs)}"
        )
        started = time.perf_counter()
        deadline = started + self.settings.task_timeout_s
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
                raise TaskFailed(f"no final status after {self.settings.task_timeout_s:g} s")
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

    @task
    def submit_then_poll(self) -> None:
        self.run_task("/api/v1/tasks", SUBMIT_NAMES[0])


class WaitingClient(AgentClient):
    """Submit and wait in one call (the synchronous API)."""

    @task
    def submit_and_wait(self) -> None:
        self.run_task("/api/v1/task?wait=30", SUBMIT_NAMES[1])


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    """Make the load test's options Locust's own (the web UI shows them as custom parameters)."""
    add_locust_options(parser)


@events.init.add_listener
def _configure_at_init(environment: Environment, **_: Any) -> None:
    """Refuse a bad option before anything runs."""
    try:
        configure(environment)
    except LoadSettingsError as exc:
        sys.exit(f"locustfile: bad option: {exc}")


@events.test_start.add_listener
def _configure_at_start(environment: Environment, **_: Any) -> None:
    """Again just before spawning: the web UI may have changed the options since ``init``."""
    configure(environment)


def configure(environment: Environment) -> LoadSettings:
    """Read the options Locust parsed; give them to the clients and weigh the clients by
    ``--sync-share`` (Locust's dispatcher reads ``weight`` when it spawns)."""
    settings = LoadSettings.from_options(environment.parsed_options)
    AgentClient.settings = settings
    WaitingClient.weight = max(0, round(settings.sync_share * 100))
    PollingClient.weight = max(0, round((1.0 - settings.sync_share) * 100))
    return settings


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
