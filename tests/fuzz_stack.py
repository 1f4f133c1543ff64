"""A real stack for the fuzz and malformed-input tests, with its own run directory (so its
SQLite preferences database is its own), two API keys, and helpers to see what was enqueued."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from baseline.model import PerformanceBaseline, StageLatency
from baseline.slots import STAGES
from batchgate.baseline_store import BaselineStore
from batchgate.settings import Settings
from tests.conftest import create_key, stack_env
from tests.harness import (
    Process,
    http_json,
    running,
    start_api,
    start_beat,
    start_simulator,
    start_worker,
    wait_until,
)


@dataclass
class FuzzStack:
    api: str
    env: dict[str, str]
    settings: Settings
    #: Two premium keys: ``key`` owns what the tests create, ``other_key`` must see none of it.
    key: str
    other_key: str

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.broker.redis_url, decode_responses=True)

    def queue_length(self) -> int:
        """Messages waiting in the task queue (all Celery priority lists of it)."""
        client = self.redis()
        try:
            names = [self.settings.broker.queue, *client.scan_iter(f"{self.settings.broker.queue}\x06\x16*")]
            return sum(int(client.llen(name)) for name in names)
        finally:
            client.close()

    def task_records(self) -> int:
        """Task records in Redis (one is written before every publish)."""
        client = self.redis()
        try:
            return sum(
                1
                for key in client.scan_iter(f"{self.settings.broker.key_prefix}:task:*")
                if key.count(":") == 2
            )
        finally:
            client.close()


def stack_settings(redis_url: str, run_dir: Path, **overrides: str) -> dict[str, str]:
    return stack_env(redis_url, BATCHGATE_RUN_DIR=str(run_dir), **overrides)


@contextlib.contextmanager
def api_only(redis_url: str, logs_dir: Path, run_dir: Path, **overrides: str) -> Iterator[FuzzStack]:
    """Just the API (no worker): whatever it enqueues stays in the queue, to be counted."""
    env = stack_settings(redis_url, run_dir, **overrides)
    env.pop("DATABASE_URL", None)
    key, other_key = create_key(env, "premium"), create_key(env, "premium")
    api, api_url = start_api(logs_dir, env, name="api-malformed")
    with running(api):
        yield FuzzStack(api_url, env, Settings.from_env(env), key, other_key)


@contextlib.contextmanager
def full_stack(redis_url: str, logs_dir: Path, run_dir: Path) -> Iterator[FuzzStack]:
    """Simulator, worker, beat and API; a metrics snapshot, an active baseline and its drift
    signal exist, and the spec's example session (``ana-1``) and user (``ada``) belong to ``key``,
    so every operation has something to answer with 200."""
    env = stack_settings(redis_url, run_dir)
    env.pop("DATABASE_URL", None)
    key, other_key = create_key(env, "premium"), create_key(env, "premium")
    sim, sim_url = start_simulator(logs_dir, env)
    env["BATCHGATE_SIMULATOR_URL"] = sim_url
    processes: list[Process] = [sim, start_worker(logs_dir, env, name="worker-fuzz")]
    processes.append(start_beat(logs_dir, env, name="beat-fuzz"))
    with running(*processes):
        api, api_url = start_api(logs_dir, env, name="api-fuzz")
        with running(api):
            stack = FuzzStack(api_url, env, Settings.from_env(env), key, other_key)
            _seed(stack)
            yield stack


def _seed(stack: FuzzStack) -> None:
    headers = {"X-API-Key": stack.key}
    wait_until(lambda: http_json("GET", f"{stack.api}/ready")[0] == 200, 30, "a consuming worker")
    status, _, body = http_json(
        "POST",
        f"{stack.api}/api/v1/task?wait=20",
        {"prompt": "My name is Ana.", "session_id": "ana-1"},
        25,
        headers,
    )
    assert status == 200, body
    status, _, body = http_json(
        "PUT", f"{stack.api}/api/v1/users/ada/preferences", {"language": "French"}, headers=headers
    )
    assert status == 200, body
    client = stack.redis()
    try:
        BaselineStore(client, stack.settings.broker.key_prefix).activate(_baseline())
    finally:
        client.close()
    wait_until(
        lambda: http_json("GET", f"{stack.api}/api/v1/metrics", headers=headers)[0] == 200,
        30,
        "a metrics snapshot",
    )
    wait_until(lambda: http_json("GET", f"{stack.api}/api/v1/drift")[0] == 200, 30, "a drift signal")


def _baseline() -> PerformanceBaseline:
    """A small baseline (the drift signal it yields does not matter here, only that one exists)."""
    return PerformanceBaseline(
        created_at=time.time(),
        git_revision="fuzz",
        settings={"model": "gemini-2.5-flash"},
        load={"source": "tests/fuzz_stack.py", "window_s": 60},
        stages={stage: StageLatency.of({400: 50, 420: 50}) for stage in STAGES},
        throughput_rps=10.0,
        tokens_per_s=100.0,
        batch_sizes={1: 100},
    )


def error_of(body: Any) -> dict[str, Any]:
    """The ``{"code", "message"}`` of batchgate's error shape (asserting that shape exactly)."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and isinstance(error["message"], str), body
    return error
