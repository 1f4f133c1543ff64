"""Shared fixtures: a real Redis per session, and per module a real stack (simulator, worker, API)
or ``make run``'s whole cluster behind nginx."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from api import create_app
from batchgate.apikeys import ApiKeyStore, new_key
from batchgate.settings import Settings
from stack.cluster import Cluster
from tests.harness import (
    Process,
    clean_env,
    free_port,
    http_json,
    start_api,
    start_redis,
    start_simulator,
    start_worker,
    stop_all,
    wait_until,
)
from tests.pg import throwaway_database


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url(logs_dir: Path) -> Iterator[str]:
    proc, url = start_redis(logs_dir)
    try:
        yield url
    finally:
        proc.stop()


@dataclass
class Stack:
    """A running simulator + Celery batch worker + one gunicorn API, sharing a Redis."""

    api: str
    simulator: str
    redis_url: str
    env: dict[str, str]
    worker: Process
    logs_dir: Path
    #: A premium key with limits far above what any test sends.
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def sim_config(self, **changes: object) -> dict:
        status, _, body = http_json("POST", f"{self.simulator}/_sim/config", changes)
        assert status == 200, body
        return body

    def sim_stats(self) -> dict:
        return http_json("GET", f"{self.simulator}/_sim/stats")[2]

    def sim_reset(self) -> None:
        assert http_json("POST", f"{self.simulator}/_sim/reset")[0] == 200


def stack_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """Settings for a test stack: its own key prefix and queue, fast simulator defaults.

    Window flushing: a test that sends N requests together and asserts what their batch did
    needs them to form one batch whatever the machine's load; adaptive mode (the product's
    default) decides by the CPU's load, so its own tests ask for it by name.
    """
    tag = secrets.token_hex(4)
    values = {
        "BATCHGATE_REDIS_URL": redis_url,
        "BATCHGATE_KEY_PREFIX": f"bgtest-{tag}",
        "BATCHGATE_QUEUE": f"batchgate-{tag}",
        "BATCHGATE_BATCH_MAX_SIZE": "32",
        "BATCHGATE_FLUSH_MODE": "window",
        "BATCHGATE_SIM_OVERHEAD_MS": "30",
        "BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS": "0.05",
        "BATCHGATE_RETRY_BASE_S": "0.05",
        "BATCHGATE_RETRY_MAX_S": "1",
        "BATCHGATE_TIER_PREMIUM_RATE": "100000",
        "BATCHGATE_TIER_PREMIUM_BURST": "100000",
    }
    values.update(overrides)
    return clean_env(**values)


def create_key(env: dict[str, str], tier: str, tenant: str | None = None) -> str:
    """A new API key of ``tier`` (in ``tenant``; None: its own) in the Redis and key prefix that
    ``env`` names."""
    settings = Settings.from_env(env)
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    try:
        return ApiKeyStore(client, settings.broker.key_prefix).create(tier, f"test {tier}", tenant=tenant)
    finally:
        client.close()


@contextlib.contextmanager
def keyed_test_client(settings: Settings) -> Iterator[FlaskClient]:
    """Flask's test client for an app on ``settings``, sending a new premium key."""
    app = create_app(settings)
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    try:
        key = ApiKeyStore(client, settings.broker.key_prefix).create("premium")
    finally:
        client.close()
    with app.test_client() as test_client:
        test_client.environ_base["HTTP_X_API_KEY"] = key
        yield test_client


@pytest.fixture(scope="module")
def stack(redis_url: str, logs_dir: Path) -> Iterator[Stack]:
    with running_stack(redis_url, logs_dir) as running:
        yield running


@contextlib.contextmanager
def running_stack(redis_url: str, logs_dir: Path, **overrides: str) -> Iterator[Stack]:
    """Simulator, worker and API on ``stack_env(redis_url, **overrides)``, a premium key; stopped after."""
    env = stack_env(redis_url, **overrides)
    api_key = create_key(env, "premium")
    sim, sim_url = start_simulator(logs_dir, env)
    env["BATCHGATE_SIMULATOR_URL"] = sim_url
    worker = start_worker(logs_dir, env)
    api, api_url = start_api(logs_dir, env)
    try:
        wait_until(lambda: http_json("GET", f"{api_url}/ready")[0] == 200, 30, "a consuming worker")
        yield Stack(api_url, sim_url, redis_url, env, worker, logs_dir, api_key)
    finally:
        stop_all(api, worker, sim)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for the session (tests/pg.py), dropped at the end."""
    with throwaway_database() as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


class RunningCluster:
    def __init__(self, cluster: Cluster, settings: Settings) -> None:
        self.cluster = cluster
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.stack.nginx_port}"
        self.https_url = f"https://127.0.0.1:{settings.stack.nginx_tls_port}"
        self.sim = settings.gemini.embedded_simulator_url
        self.api_key = settings.edge.demo_api_key
        self.headers = {"X-API-Key": self.api_key}

    def sim_config(self, **changes: object) -> None:
        status, _, body = http_json("POST", f"{self.sim}/_sim/config", changes)
        assert status == 200, body

    def sim_stats(self) -> dict:
        return http_json("GET", f"{self.sim}/_sim/stats")[2]

    def sim_reset(self) -> None:
        assert http_json("POST", f"{self.sim}/_sim/reset")[0] == 200


@contextlib.contextmanager
def running_cluster(env: dict[str, str], run_dir: Path) -> Iterator[RunningCluster]:
    """``make run``'s cluster on ``env``, ready (nginx answers and a worker consumes), then stopped."""
    settings = Settings.from_env(env)
    cluster = Cluster(settings, run_dir, env)
    cluster.start()
    try:
        cluster.wait_ready(90)
        yield RunningCluster(cluster, settings)
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    run_dir: Path = tmp_path_factory.mktemp("cluster")
    ports = [free_port() for _ in range(3)]
    env = stack_env(
        redis_url,
        BATCHGATE_API_PORTS=",".join(map(str, ports)),
        BATCHGATE_NGINX_PORT=str(free_port()),
        BATCHGATE_NGINX_TLS_PORT=str(free_port()),
        BATCHGATE_FLOWER_PORT=str(free_port()),
        BATCHGATE_SIM_PORT=str(free_port()),
        BATCHGATE_RUN_DIR=str(run_dir),
        BATCHGATE_FLOWER_AUTH="ops:test-password",
        BATCHGATE_DEMO_API_KEY=new_key(),
        BATCHGATE_TIER_PREMIUM_RATE="2000",
        BATCHGATE_TIER_PREMIUM_BURST="2000",
    )
    with running_cluster(env, run_dir) as running:
        yield running
