"""Bad input gets a clear JSON error and nothing is enqueued (Flask app on a real Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from batchgate.settings import Settings
from tests.conftest import keyed_test_client, stack_env


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_env(
        stack_env(redis_url, BATCHGATE_MAX_BODY_BYTES="2000", BATCHGATE_MAX_PROMPT_CHARS="500")
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[FlaskClient]:
    with keyed_test_client(settings) as test_client:
        yield test_client


def queue_length(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.broker.redis_url).llen(settings.broker.queue))


def assert_error(response, status: int, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"prompt": ""}, "invalid_request"),
        ({"prompt": "   "}, "invalid_request"),
        ({"prompt": 42}, "invalid_request"),
        ({"prompt": "hi", "unknown": 1}, "invalid_request"),
        ({"prompt": "hi", "context": "not an object"}, "invalid_request"),
        ({"prompt": "hi", "generation": {"temperature": 9}}, "invalid_request"),
        ({"prompt": "hi", "generation": {"max_output_tokens": "many"}}, "invalid_request"),
        ({"prompt": "hi", "generation": {"bogus": 1}}, "invalid_request"),
        ({"prompt": "hi", "strategy": "sometimes"}, "invalid_request"),
        ({"prompt": "hi", "model": "../etc/passwd"}, "invalid_request"),
        ({"prompt": "x" * 501}, "prompt_too_long"),
        ([1, 2], "invalid_request"),
    ],
)
def test_invalid_bodies_are_422_and_nothing_is_enqueued(
    client: FlaskClient, settings: Settings, body, code
) -> None:  # type: ignore[no-untyped-def]
    assert_error(client.post("/api/v1/tasks", json=body), 422, code)
    assert queue_length(settings) == 0


def test_malformed_json_is_400(client: FlaskClient) -> None:
    response = client.post("/api/v1/tasks", data=b'{"prompt": ', content_type="application/json")
    assert_error(response, 400, "invalid_json")
    response = client.post("/api/v1/tasks", data=b'{"prompt": "\xff\xfe"}', content_type="application/json")
    assert_error(response, 400, "invalid_json")


def test_non_json_content_type_is_415(client: FlaskClient) -> None:
    assert_error(client.post("/api/v1/tasks", data="prompt=hi"), 415, "unsupported_media_type")


def test_oversized_body_is_413(client: FlaskClient) -> None:
    assert_error(client.post("/api/v1/tasks", json={"prompt": "y" * 5000}), 413, "body_too_large")


def test_unknown_task_and_route_are_404_and_wrong_method_405(client: FlaskClient) -> None:
    assert_error(client.get("/api/v1/tasks/nope"), 404, "not_found")
    assert_error(client.get("/api/v1/elsewhere"), 404, "not_found")
    assert_error(client.delete("/api/v1/tasks"), 405, "method_not_allowed")


@pytest.mark.parametrize("wait", ["soon", "-1", "nan"])
def test_bad_wait_is_400(client: FlaskClient, wait: str) -> None:
    submitted = client.post("/api/v1/tasks", json={"prompt": "hi"})
    assert submitted.status_code == 202
    assert_error(client.get(f"/api/v1/tasks/{submitted.get_json()['id']}?wait={wait}"), 400, "invalid_wait")


def test_valid_submission_is_202_with_location_and_queued(client: FlaskClient, settings: Settings) -> None:
    response = client.post(
        "/api/v1/tasks",
        json={
            "prompt": "hello",
            "system": "be brief",
            "context": {"user": "u1"},
            "generation": {"temperature": 0.2},
        },
    )
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and len(body["id"]) == 32
    assert response.headers["Location"] == f"/api/v1/tasks/{body['id']}"
    assert queue_length(settings) == 1
    shown = client.get(response.headers["Location"]).get_json()
    assert shown["id"] == body["id"] and shown["status"] == "queued"


def test_ready_is_503_without_a_worker_and_health_is_200(client: FlaskClient) -> None:
    assert client.get("/health").status_code == 200
    assert_error(client.get("/ready"), 503, "no_workers")
