"""Exactly one answer: concurrent retries share one task, records are never written over,
and drop-in requests retried by their SDK join the task in flight (real stack)."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import redis

from batchgate.taskstore import SUCCEEDED, Outcome, TaskStore
from batching.simulator.answers import answer_for
from tests.conftest import Stack, create_key
from tests.harness import http_json


def test_twenty_concurrent_requests_with_one_idempotency_key_make_one_task(stack: Stack) -> None:
    stack.sim_reset()
    key = f"order-{secrets.token_hex(4)}"
    body = {"prompt": f"charge card {key} once", "cache": False}

    def submit(_: int) -> tuple[int, dict]:
        status, _, reply = http_json(
            "POST",
            f"{stack.api}/api/v1/task?wait=20",
            body,
            timeout=30,
            headers={**stack.headers, "Idempotency-Key": key},
        )
        return status, reply

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(submit, range(20)))
    assert {status for status, _ in replies} == {200}, replies
    assert len({reply["id"] for _, reply in replies}) == 1
    assert {reply["result"]["text"] for _, reply in replies} == {answer_for(body["prompt"])}
    assert stack.sim_stats()["calls"] == 1


def test_a_record_is_created_only_where_none_exists(redis_client: redis.Redis) -> None:
    store = TaskStore(redis_client, f"once-{secrets.token_hex(4)}", 60)
    assert store.create("t1", {"prompt": "first"}, 1.0, "k")
    store.finish([Outcome("t1", SUCCEEDED, {"text": "the answer"}, None, {})], 2.0)
    # A second attempt under the same id (a retry that took over too early) writes nothing.
    assert not store.create("t1", {"prompt": "first"}, 3.0, "k")
    assert not store.create_cached("t1", {"prompt": "first"}, 3.0, "k", {"text": "other"})
    record = store.get("t1")
    assert record is not None and record["status"] == "succeeded"
    assert record["result"] == {"text": "the answer"}


def test_identical_drop_in_requests_of_two_tenants_never_join(stack: Stack) -> None:
    """The attack: a tenant that guesses another's prompt sends it at the same moment, hoping to
    join that task and read its answer (or get it billed). Each tenant gets its own task and
    its own model call."""
    stack.sim_reset()
    stack.sim_config(overhead_ms=1500.0)
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": f"guess my prompt {secrets.token_hex(4)}"}],
    }
    keys = [stack.api_key, create_key(stack.env, "premium")]
    try:
        with ThreadPoolExecutor(2) as pool:
            replies = list(
                pool.map(
                    lambda key: http_json(
                        "POST",
                        f"{stack.api}/v1/chat/completions",
                        body,
                        30,
                        {"Authorization": f"Bearer {key}"},
                    ),
                    keys,
                )
            )
        assert [status for status, _, _ in replies] == [200, 200], replies
        assert replies[0][2]["id"] != replies[1][2]["id"]
        assert stack.sim_stats()["calls"] == 2
    finally:
        stack.sim_config(overhead_ms=30.0)


def test_identical_drop_in_requests_in_flight_join_one_task(stack: Stack) -> None:
    """The OpenAI SDK retries a 504 with the same body and no Idempotency-Key: while the first
    is in flight, a retry joins it; once it is answered, the same request is a new one."""
    stack.sim_reset()
    stack.sim_config(overhead_ms=1500.0)
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": f"collapse me {secrets.token_hex(4)}"}],
    }
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    try:
        with ThreadPoolExecutor(3) as pool:
            replies = list(
                pool.map(
                    lambda _: http_json("POST", f"{stack.api}/v1/chat/completions", body, 30, headers),
                    range(3),
                )
            )
        assert {status for status, _, _ in replies} == {200}, replies
        assert len({reply["id"] for _, _, reply in replies}) == 1
        assert stack.sim_stats()["calls"] == 1
        # Answered: the same request again is a new task (a client asking twice, not a retry;
        # here the response cache answers it).
        again = http_json("POST", f"{stack.api}/v1/chat/completions", body, 30, headers)
        assert again[0] == 200 and again[2]["id"] != replies[0][2]["id"]
    finally:
        stack.sim_config(overhead_ms=30.0)
