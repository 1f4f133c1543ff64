"""The edge's X-Request-ID is stored in the task record when it is a sane token (Flask app
on a real Redis; through nginx in tests/e2e/test_cluster_e2e.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from tests.conftest import keyed_test_client, stack_env


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env(stack_env(redis_url))


@pytest.fixture
def client(settings: Settings) -> Iterator[FlaskClient]:
    with keyed_test_client(settings) as test_client:
        yield test_client


def submit(client: FlaskClient, request_id: str | None, prompt: str = "which id?") -> dict:
    headers = {} if request_id is None else {"X-Request-ID": request_id}
    response = client.post("/api/v1/tasks", json={"prompt": prompt, "cache": False}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("request_id", ["a1b2c3d4e5f60718293a4b5c6d7e8f90", "client-7.retry_2", "x" * 128])
def test_a_sane_request_id_is_kept_in_the_record(
    client: FlaskClient, settings: Settings, request_id: str
) -> None:
    task_id = submit(client, request_id)["id"]
    body = client.get(f"/api/v1/tasks/{task_id}").get_json()
    assert body["request_id"] == request_id
    store = TaskStore(
        redis.Redis.from_url(settings.broker.redis_url),
        settings.broker.key_prefix,
        settings.broker.task_ttl_s,
    )
    record = store.get(task_id)
    assert record is not None and record["request_id"] == request_id


@pytest.mark.parametrize("request_id", [None, "", "x" * 129, "has space", "semi;colon", "ünï"])
def test_no_or_a_bad_request_id_is_left_out(client: FlaskClient, request_id: str | None) -> None:
    task_id = submit(client, request_id)["id"]
    assert "request_id" not in client.get(f"/api/v1/tasks/{task_id}").get_json()
