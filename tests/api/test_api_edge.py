"""Edge policy at the API (Flask app on a real Redis, no worker): keys, ownership,
rate limits, backpressure, cache and idempotency."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.idempotency import IdempotencyStore
from api.schemas import TaskRequest
from batchgate.apikeys import ApiKeyStore, hash_key
from batchgate.response_cache import ResponseCache, cache_key
from batchgate.sessions import SessionStore
from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from batchgate.tenants import inflight_key, own_tenant
from tests.conftest import stack_env

Factory = Callable[..., tuple[Flask, Settings]]


@pytest.fixture
def make_app(redis_url: str) -> Iterator[Factory]:
    def factory(**overrides: str) -> tuple[Flask, Settings]:
        settings = Settings.from_env(stack_env(redis_url, **overrides))
        return create_app(settings), settings

    yield factory


def new_key(settings: Settings, tier: str) -> str:
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    return ApiKeyStore(client, settings.broker.key_prefix).create(tier)


def queue_length(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.broker.redis_url).llen(settings.broker.queue))


def post(client: FlaskClient, key: str | None, body: dict, **headers: str):  # type: ignore[no-untyped-def]
    if key is not None:
        headers["X-API-Key"] = key
    return client.post("/api/v1/tasks", json=body, headers=headers)


def test_missing_or_unknown_keys_are_401(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    for key, code in ((None, "missing_api_key"), ("bg_nope", "invalid_api_key")):
        response = post(client, key, {"prompt": "hi"})
        assert response.status_code == 401 and response.get_json()["error"]["code"] == code
        response = client.get("/api/v1/tasks/abc", headers={"X-API-Key": key or ""})
        assert response.status_code == 401
    assert queue_length(settings) == 0


def test_a_task_is_visible_only_to_the_key_that_created_it(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    alice, bob = new_key(settings, "premium"), new_key(settings, "premium")
    task_id = post(client, alice, {"prompt": "mine"}).get_json()["id"]
    assert client.get(f"/api/v1/tasks/{task_id}", headers={"X-API-Key": alice}).status_code == 200
    response = client.get(f"/api/v1/tasks/{task_id}", headers={"X-API-Key": bob})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_free_tier_burst_then_429_with_headers(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    key = new_key(settings, "free")
    responses = [post(client, key, {"prompt": f"q{i}"}) for i in range(12)]
    assert [r.status_code for r in responses] == [202] * 10 + [429] * 2
    assert responses[0].headers["X-RateLimit-Limit"] == "10"
    assert responses[0].headers["X-RateLimit-Remaining"] == "9"
    refused = responses[10]
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) >= 9
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert queue_length(settings) == 10


def test_backpressure_refuses_above_the_high_water_mark(make_app: Factory) -> None:
    app, settings = make_app(BATCHGATE_QUEUE_HIGH_WATER="3", BATCHGATE_QUEUE_LOW_WATER="1")
    client = app.test_client()
    key = new_key(settings, "premium")
    accepted = [post(client, key, {"prompt": f"q{i}"}) for i in range(3)]
    assert [r.status_code for r in accepted] == [202] * 3
    assert [r.headers["X-Queue-Depth"] for r in accepted] == ["1", "2", "3"]
    refused = post(client, key, {"prompt": "one too many"})
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "overloaded"
    assert refused.headers["Retry-After"] == str(settings.edge.backpressure_retry_after_s)
    assert refused.headers["X-Queue-Depth"] == "3"
    assert queue_length(settings) == 3


def test_cache_hit_is_answered_at_submission_without_the_queue(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    key = new_key(settings, "premium")
    result = {
        "text": "cached answer",
        "model": settings.gemini.model,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    cache = ResponseCache(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix, 60
    )
    tenant = own_tenant(hash_key(key))
    digest = cache_key({"model": settings.gemini.model, "prompt": "popular question"})
    cache.put_many([(cache.record_key(tenant, digest), result)])

    hit = post(client, key, {"prompt": "popular question"})
    assert hit.status_code == 200
    body = hit.get_json()
    assert body["cached"] is True and body["status"] == "succeeded" and body["result"] == result
    assert queue_length(settings) == 0
    shown = client.get(hit.headers["Location"], headers={"X-API-Key": key}).get_json()
    assert shown["cached"] is True and shown["result"] == result

    # The explicit default model is the same request; opting out or other settings are not.
    assert (
        post(client, key, {"prompt": "popular question", "model": settings.gemini.model}).status_code == 200
    )
    assert post(client, key, {"prompt": "popular question", "cache": False}).status_code == 202
    assert (
        post(client, key, {"prompt": "popular question", "generation": {"temperature": 0}}).status_code == 202
    )
    assert queue_length(settings) == 2

    # Another tenant's identical request is not answered from this tenant's entry.
    assert post(client, new_key(settings, "premium"), {"prompt": "popular question"}).status_code == 202
    assert queue_length(settings) == 3


def test_time_sensitive_prompts_bypass_the_cache(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    key = new_key(settings, "premium")
    prompt = "What is on the menu today?"
    cache = ResponseCache(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix, 60
    )
    digest = cache_key({"model": settings.gemini.model, "prompt": prompt})
    cache.put_many([(cache.record_key(own_tenant(hash_key(key)), digest), {"text": "stale"})])
    response = post(client, key, {"prompt": prompt})
    assert response.status_code == 202 and "cached" not in response.get_json()
    assert queue_length(settings) == 1


def test_idempotency_key_returns_the_original_task(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    key, other = new_key(settings, "premium"), new_key(settings, "premium")
    first = post(client, key, {"prompt": "do it once"}, **{"Idempotency-Key": "order-42"})
    again = post(client, key, {"prompt": "do it once"}, **{"Idempotency-Key": "order-42"})
    assert first.status_code == 202 and again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert queue_length(settings) == 1
    conflict = post(client, key, {"prompt": "something else"}, **{"Idempotency-Key": "order-42"})
    assert conflict.status_code == 422 and conflict.get_json()["error"]["code"] == "idempotency_key_reused"
    # Another caller's identical key is its own.
    theirs = post(client, other, {"prompt": "do it once"}, **{"Idempotency-Key": "order-42"})
    assert theirs.get_json()["id"] != first.get_json()["id"]
    assert queue_length(settings) == 2


def test_context_length_is_limited(make_app: Factory) -> None:
    app, settings = make_app(BATCHGATE_MAX_CONTEXT_CHARS="50")
    client = app.test_client()
    key = new_key(settings, "premium")
    response = post(client, key, {"prompt": "hi", "context": {"notes": "x" * 100}})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "context_too_long"


def test_without_auth_callers_are_limited_per_address(make_app: Factory) -> None:
    app, _ = make_app(
        BATCHGATE_AUTH_ENABLED="false", BATCHGATE_ANONYMOUS_RATE="1", BATCHGATE_ANONYMOUS_BURST="2"
    )
    client = app.test_client()
    codes = [
        post(client, None, {"prompt": f"q{i}"}, **{"X-Real-IP": "10.0.0.1"}).status_code for i in range(3)
    ]
    assert codes == [202, 202, 429]
    assert post(client, None, {"prompt": "q"}, **{"X-Real-IP": "10.0.0.2"}).status_code == 202
    task_id = post(client, None, {"prompt": "q"}, **{"X-Real-IP": "10.0.0.3"}).get_json()["id"]
    assert client.get(f"/api/v1/tasks/{task_id}").status_code == 200


# --- a tenant's tasks in flight: every way a submission ends gives its slot back or keeps it ----


def in_flight(settings: Settings, tenant: str) -> set[str]:
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    return set(client.zrange(inflight_key(settings.broker.key_prefix, tenant), 0, -1))


def test_a_retry_at_the_cap_gets_its_original_and_other_submissions_get_429(make_app: Factory) -> None:
    app, settings = make_app(BATCHGATE_TIER_PREMIUM_MAX_IN_FLIGHT="1")
    client = app.test_client()
    key = new_key(settings, "premium")
    first = post(client, key, {"prompt": "slow job"}, **{"Idempotency-Key": "job-1"})
    assert first.status_code == 202  # no worker runs here: it stays in flight
    refused = post(client, key, {"prompt": "another job"})
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "too_many_in_flight"
    assert int(refused.headers["Retry-After"]) >= 1
    again = post(client, key, {"prompt": "slow job"}, **{"Idempotency-Key": "job-1"})
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    # Another body under the same key is still a conflict-free refusal at the cap.
    other = post(client, key, {"prompt": "third"}, **{"Idempotency-Key": "job-2"})
    assert other.status_code == 429
    assert in_flight(settings, own_tenant(hash_key(key))) == {first.get_json()["id"]}


def test_a_refused_session_turn_gives_its_slot_back(make_app: Factory) -> None:
    app, settings = make_app()
    client = app.test_client()
    key = new_key(settings, "premium")
    tenant = own_tenant(hash_key(key))
    sessions = SessionStore(
        redis.Redis.from_url(settings.broker.redis_url), settings.broker.key_prefix, 60, 10
    )
    redis.Redis.from_url(settings.broker.redis_url).set(sessions.meta_key(tenant, "broken"), "not a hash")
    refused = post(client, key, {"prompt": "hi", "session_id": "broken"}, **{"Idempotency-Key": "turn-1"})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "session_unreadable"
    assert in_flight(settings, tenant) == set() and queue_length(settings) == 0
    # The Idempotency-Key was given back too: the same key with another body is not a conflict.
    assert post(client, key, {"prompt": "fine"}, **{"Idempotency-Key": "turn-1"}).status_code == 202


def test_a_retry_that_finishes_a_dead_attempt_from_the_cache_holds_no_slot(make_app: Factory) -> None:
    """The first attempt claimed its Idempotency-Key and a slot, then died before its record;
    the retry is answered from the cache under the claimed id: the slot must come back."""
    app, settings = make_app()
    client = app.test_client()
    key = new_key(settings, "premium")
    tenant = own_tenant(hash_key(key))
    body = {"prompt": "asked twice"}
    store = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    cache = ResponseCache(store, settings.broker.key_prefix, 60)
    digest = cache_key({"model": settings.gemini.model, "prompt": "asked twice"})
    cache.put_many([(cache.record_key(tenant, digest), {"text": "known"})])
    body_hash = hashlib.sha256(
        json.dumps(TaskRequest(prompt="asked twice").model_dump(), sort_keys=True).encode()
    ).hexdigest()
    assert (
        IdempotencyStore(store, settings.broker.key_prefix, 60)
        .claim(hash_key(key), "retry-7", body_hash, "dead1")
        .new
    )
    store.zadd(inflight_key(settings.broker.key_prefix, tenant), {"dead1": 1.0})  # the dead attempt's slot
    retried = post(client, key, body, **{"Idempotency-Key": "retry-7"})
    assert retried.status_code == 200 and retried.get_json()["id"] == "dead1" and retried.get_json()["cached"]
    assert in_flight(settings, tenant) == set()


def test_a_concurrent_retry_waits_for_the_first_attempts_record_and_sends_nothing(make_app: Factory) -> None:
    """A retry that finds the key claimed a moment ago, and no record yet, waits for the first
    attempt's record (within the grace) instead of taking its task over."""
    app, settings = make_app()
    client = app.test_client()
    key = new_key(settings, "premium")
    store = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    body_hash = hashlib.sha256(
        json.dumps(TaskRequest(prompt="once").model_dump(), sort_keys=True).encode()
    ).hexdigest()
    claims = IdempotencyStore(store, settings.broker.key_prefix, 60)
    assert claims.claim(hash_key(key), "live-1", body_hash, "first").new
    tasks = TaskStore(store, settings.broker.key_prefix, 60)

    def first_attempt_goes_on() -> None:  # what the live first attempt does next
        tasks.create("first", {"prompt": "once"}, time.time(), hash_key(key))
        time.sleep(0.3)
        claims.mark_published(hash_key(key), "live-1", "first", body_hash)

    writer = threading.Timer(0.3, first_attempt_goes_on)
    writer.start()
    retried = post(client, key, {"prompt": "once"}, **{"Idempotency-Key": "live-1"})
    writer.join()
    assert retried.status_code == 202 and retried.get_json()["id"] == "first"
    assert queue_length(settings) == 0  # the first attempt publishes its own message
