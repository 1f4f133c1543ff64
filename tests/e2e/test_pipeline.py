"""Submit → batch → simulator (through google-genai) → poll, over real connections.

A real Redis, the simulator, a Celery batch worker and a gunicorn API, each its own process.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time

import redis

from api.idempotency import IdempotencyStore
from api.schemas import TaskRequest
from batchgate.apikeys import hash_key
from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from batching.simulator.answers import answer_for
from tests.clients import read_events, submit_and_collect
from tests.conftest import Stack, create_key
from tests.harness import BIN, first_call_fails_seed, http_json, wait_until


def prompts(tag: str, n: int) -> list[str]:
    return [f"{tag} question {i}: what is {i} squared?" for i in range(n)]


def assert_own_answers(run) -> None:  # type: ignore[no-untyped-def]
    for prompt, body in zip(run.prompts, run.bodies, strict=True):
        assert body is not None, f"no answer for {prompt!r}"
        assert body["status"] == "succeeded", body
        assert body["result"]["text"] == answer_for(prompt)


def test_one_task_round_trip(stack: Stack) -> None:
    status, headers, body = http_json(
        "POST", f"{stack.api}/api/v1/tasks", {"prompt": "What is batchgate?"}, headers=stack.headers
    )
    assert status == 202 and body["status"] == "queued"
    status, _, task = http_json(
        "GET", f"{stack.api}{headers['Location']}?wait=20", timeout=30, headers=stack.headers
    )
    assert status == 200 and task["status"] == "succeeded", task
    assert task["result"]["text"] == answer_for("What is batchgate?")
    assert task["result"]["model"] == "gemini-2.5-flash"
    assert task["result"]["usage"]["input_tokens"] > 0 and task["result"]["usage"]["output_tokens"] > 0
    timings = task["timings"]
    assert timings["batch_size"] >= 1 and timings["model_ms"] > 0
    assert timings["total_ms"] >= timings["model_ms"]
    # The simulator's own time for the call (its Server-Timing header), within the call's.
    assert 0 < timings["model_server_ms"] <= timings["model_ms"]


def test_submit_and_wait_returns_the_finished_task(stack: Stack) -> None:
    status, _, task = http_json(
        "POST", f"{stack.api}/api/v1/task", {"prompt": "sync please"}, timeout=40, headers=stack.headers
    )
    assert status == 200 and task["status"] == "succeeded"
    assert task["result"]["text"] == answer_for("sync please")


def test_submit_and_wait_answers_202_when_the_wait_runs_out(stack: Stack) -> None:
    stack.sim_config(overhead_ms=1500)
    try:
        status, headers, task = http_json(
            "POST", f"{stack.api}/api/v1/task?wait=0.2", {"prompt": "slow one"}, headers=stack.headers
        )
        assert status == 202 and task["status"] in ("queued", "running")
        status, _, task = http_json(
            "GET", f"{stack.api}{headers['Location']}?wait=20", timeout=30, headers=stack.headers
        )
        assert task["status"] == "succeeded"
    finally:
        stack.sim_config(overhead_ms=30)


def test_200_concurrent_tasks_are_batched_and_each_gets_its_own_answer(stack: Stack) -> None:
    stack.sim_reset()
    run = submit_and_collect(
        stack.api, api_key=stack.api_key, bodies=[{"prompt": p} for p in prompts("batch", 200)]
    )
    assert_own_answers(run)
    stats = stack.sim_stats()
    assert stats["items"] == 200
    # Batched: at least four requests a call on average (unbatched: 200 calls). How many more
    # depends on how fast 200 submissions reach the worker, i.e. on the machine and its load.
    assert stats["calls"] <= 200 / 4, stats
    sizes = [b["timings"]["batch_size"] for b in run.bodies if b]
    assert max(sizes) > 1
    # Every message acknowledged (a batch's acks go together: workers.bulk_ack).
    client = redis.Redis.from_url(stack.redis_url)
    wait_until(
        lambda: client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0, 10, "every message acked"
    )
    client.close()


def test_faults_are_absorbed_dropped_items_retried_and_failed_calls_backed_off(stack: Stack) -> None:
    stack.sim_reset()
    stack.sim_config(drop_item_rate=0.05, error_rate=0.05, seed=first_call_fails_seed(0.05))
    try:
        run = submit_and_collect(
            stack.api, api_key=stack.api_key, bodies=[{"prompt": p} for p in prompts("faulty", 200)]
        )
    finally:
        stack.sim_config(drop_item_rate=0.0, error_rate=0.0)
    assert_own_answers(run)
    stats = stack.sim_stats()
    assert stats["errors"] > 0 and stats["dropped_items"] > 0, stats
    assert max(b["timings"]["attempts"] for b in run.bodies if b) > 1


def test_an_item_that_keeps_failing_fails_alone_with_a_clear_error(stack: Stack) -> None:
    bodies = [{"prompt": p} for p in prompts("mates", 9)]
    bodies.insert(4, {"prompt": "this one is poisoned [[sim:fail]]"})
    run = submit_and_collect(stack.api, api_key=stack.api_key, bodies=bodies)
    poisoned = run.bodies[4]
    assert poisoned is not None and poisoned["status"] == "failed"
    assert poisoned["error"]["code"] == "model_unavailable"
    assert "attempt" in poisoned["error"]["message"]
    mates = [b for i, b in enumerate(run.bodies) if i != 4]
    assert all(b is not None and b["status"] == "succeeded" for b in mates)
    batch_sizes = {b["timings"]["batch_size"] for b in mates if b}
    assert max(batch_sizes) > 1  # they really shared a batch with the poisoned item


def test_strategies_and_settings_split_batches(stack: Stack) -> None:
    bodies = [{"prompt": p, "strategy": "concurrent"} for p in prompts("fan", 4)]
    bodies += [{"prompt": p, "generation": {"temperature": 0.1}} for p in prompts("cold", 3)]
    run = submit_and_collect(stack.api, api_key=stack.api_key, bodies=bodies)
    assert_own_answers(run)
    assert all(b["timings"]["items_in_call"] == 1 for b in run.bodies[:4] if b)


def test_a_redelivered_message_is_harmless(stack: Stack) -> None:
    _, headers, body = http_json(
        "POST", f"{stack.api}/api/v1/tasks", {"prompt": "only once"}, headers=stack.headers
    )
    task_id = body["id"]
    first = http_json("GET", f"{stack.api}{headers['Location']}?wait=20", timeout=30, headers=stack.headers)[
        2
    ]
    assert first["status"] == "succeeded"
    items_before = stack.sim_stats()["items"]

    from batchgate.settings import Settings
    from workers.app import create_celery

    settings = Settings.from_env(stack.env)
    app = create_celery(settings)
    app.send_task(
        "batchgate.infer",
        kwargs={"request": {"prompt": "only once"}, "submitted_at": time.time()},
        task_id=task_id,
        queue=settings.broker.queue,
        ignore_result=True,
    )
    client = redis.Redis.from_url(stack.redis_url)
    wait_until(
        lambda: client.llen(settings.broker.queue) == 0 and client.hlen("unacked") == 0,
        20,
        "redelivery consumed",
    )
    again = http_json("GET", f"{stack.api}{headers['Location']}", timeout=10, headers=stack.headers)[2]
    assert again == first
    assert stack.sim_stats()["items"] == items_before
    app.close()


def test_a_plain_celery_worker_has_the_batch_consumers_shape(stack: Stack) -> None:
    """The stack's worker is started as plain `celery -A workers.celery_entry worker`: its
    thread pool, concurrency, prefetch and task events come from the app's configuration."""
    settings = Settings.from_env(stack.env)
    inspect = subprocess.run(
        [str(BIN / "celery"), "-A", "workers.celery_entry", "inspect", "conf", "--json", "--timeout", "5"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    replies = json.loads(inspect.stdout.strip().splitlines()[-1])
    ours = [conf for conf in replies.values() if conf.get("task_default_queue") == settings.broker.queue]
    assert ours, replies.keys()
    for conf in ours:
        assert conf["worker_pool"] == "threads" and conf["worker_send_task_events"] is True
        assert conf["worker_concurrency"] == settings.consumer.worker_concurrency
        assert conf["worker_prefetch_multiplier"] == settings.consumer.batch_max_size + 1


def submit_wait(stack: Stack, body: dict, **headers: str) -> tuple[int, dict]:
    status, _, task = http_json(
        "POST", f"{stack.api}/api/v1/task?wait=20", body, timeout=30, headers={**stack.headers, **headers}
    )
    return status, task


def test_a_repeated_prompt_is_served_from_the_cache(stack: Stack) -> None:
    status, first = submit_wait(stack, {"prompt": "What does a load balancer do?"})
    assert status == 200 and first["status"] == "succeeded" and "cached" not in first
    items = stack.sim_stats()["items"]
    status, again = submit_wait(stack, {"prompt": "What does a load balancer do?"})
    assert status == 200 and again["cached"] is True and again["id"] != first["id"]
    assert again["result"] == first["result"]
    assert stack.sim_stats()["items"] == items  # no new model call


def test_a_time_sensitive_prompt_is_never_cached(stack: Stack) -> None:
    items = stack.sim_stats()["items"]
    for _ in range(2):
        status, task = submit_wait(stack, {"prompt": "What should I cook today?"})
        assert status == 200 and task["status"] == "succeeded" and "cached" not in task
    assert stack.sim_stats()["items"] == items + 2


def test_the_same_idempotency_key_gives_one_task_and_one_call(stack: Stack) -> None:
    items = stack.sim_stats()["items"]
    body = {"prompt": "charge the card for order 9", "cache": False}
    status, first = submit_wait(stack, body, **{"Idempotency-Key": "order-9"})
    status2, second = submit_wait(stack, body, **{"Idempotency-Key": "order-9"})
    assert status == status2 == 200 and first["id"] == second["id"] and first == second
    assert stack.sim_stats()["items"] == items + 1


def test_task_events_stream_queued_running_final_and_resume(stack: Stack) -> None:
    stack.sim_config(overhead_ms=600)
    try:
        _, _, body = http_json(
            "POST", f"{stack.api}/api/v1/tasks", {"prompt": "stream me"}, headers=stack.headers
        )
        url = f"{stack.api}/api/v1/tasks/{body['id']}/events"
        events = read_events(url, stack.headers)
    finally:
        stack.sim_config(overhead_ms=30)
    assert [(i, name) for i, name, _ in events] == [("1", "queued"), ("2", "running"), ("3", "succeeded")]
    assert events[1][2]["batch_size"] >= 1
    assert events[2][2]["result"]["text"] == answer_for("stream me")
    # Resuming after the running event replays only the final one; after it, nothing.
    resumed = read_events(url, {**stack.headers, "Last-Event-ID": "2"})
    assert [(i, name) for i, name, _ in resumed] == [("3", "succeeded")]
    assert read_events(url, {**stack.headers, "Last-Event-ID": "3"}) == []
    other = create_key(stack.env, "premium")
    assert http_json("GET", url, headers={"X-API-Key": other})[0] == 404


def test_a_streamed_task_sends_its_chunks_as_delta_events_in_order(stack: Stack) -> None:
    """``"stream": true``: the worker streams the model call and each chunk becomes an event."""
    stack.sim_config(overhead_ms=600)  # the stream opens while the task is still queued
    prompt = "stream me in chunks, please, with a somewhat longer answer to split"
    try:
        _, _, body = http_json(
            "POST", f"{stack.api}/api/v1/tasks", {"prompt": prompt, "stream": True}, headers=stack.headers
        )
        url = f"{stack.api}/api/v1/tasks/{body['id']}/events"
        events = read_events(url, stack.headers)
    finally:
        stack.sim_config(overhead_ms=30)
    names = [name for _, name, _ in events]
    assert names[:2] == ["queued", "running"] and names[-1] == "succeeded", names
    deltas = [data for _, name, data in events if name == "delta"]
    assert len(deltas) >= 2, names  # the simulator streams an answer in several chunks
    assert [int(i) for i, _, _ in events] == list(range(1, len(events) + 1))
    final = events[-1][2]
    assert "".join(d["text"] for d in deltas) == final["result"]["text"] == answer_for(prompt)
    assert {d["attempt"] for d in deltas} == {1}
    # Resuming after the first chunk replays the rest, in order.
    resumed = read_events(url, {**stack.headers, "Last-Event-ID": "3"})
    assert [(i, n) for i, n, _ in resumed] == [(i, n) for i, n, _ in events[3:]]
    assert stack.sim_stats()["stream_calls"] >= 1


def test_client_held_history_reaches_the_model_as_turns(stack: Stack) -> None:
    history = [{"role": "user", "text": "My name is Ana."}, {"role": "model", "text": "Hello Ana."}]
    prompt = "What is my name? (history test)"
    status, _, body = http_json(
        "POST",
        f"{stack.api}/api/v1/task?wait=20",
        {"prompt": prompt, "history": history},
        headers=stack.headers,
        timeout=30,
    )
    assert status == 200 and body["status"] == "succeeded", body
    calls = http_json("GET", f"{stack.simulator}/_sim/requests")[2]["requests"]
    (call,) = [c for c in calls if c["body"]["contents"][-1]["parts"][-1]["text"] == prompt]
    assert [(c["role"], c["parts"][0]["text"]) for c in call["body"]["contents"]] == [
        ("user", "My name is Ana."),
        ("model", "Hello Ana."),
        ("user", prompt),
    ]
    for bad, code in (
        ({"prompt": "x", "history": history, "session_id": "s1"}, "invalid_request"),
        ({"prompt": "x", "history": [{"role": "system", "text": "hi"}]}, "invalid_request"),
        ({"prompt": "x", "history": [{"role": "user"}]}, "invalid_request"),
    ):
        status, _, reply = http_json("POST", f"{stack.api}/api/v1/tasks", bad, headers=stack.headers)
        assert status == 422 and reply["error"]["code"] == code, reply


def _died_after_claim(stack: Stack, body: dict, idempotency_key: str, write_record: bool) -> str:
    """What a replica killed mid-submission leaves: the Idempotency-Key claimed, maybe the
    queued record, but no message."""
    settings = Settings.from_env(stack.env)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        owner = hash_key(stack.api_key)
        body_hash = hashlib.sha256(
            json.dumps(TaskRequest.model_validate(body).model_dump(), sort_keys=True).encode()
        ).hexdigest()
        task_id = secrets.token_hex(16)
        store = IdempotencyStore(client, settings.broker.key_prefix, 3600)
        assert store.claim(owner, idempotency_key, body_hash, task_id).new
        if write_record:
            message = {**body, "model": settings.gemini.model}
            TaskStore(client, settings.broker.key_prefix, 3600).create(task_id, message, time.time(), owner)
        return task_id
    finally:
        client.close()


def test_a_retry_finishes_the_work_of_a_replica_that_died_mid_submission(stack: Stack) -> None:
    for write_record in (True, False):
        body = {"prompt": f"died mid-submission ({write_record}) {secrets.token_hex(3)}", "cache": False}
        key = f"died-{secrets.token_hex(4)}"
        task_id = _died_after_claim(stack, body, key, write_record)
        status, _, reply = http_json(
            "POST",
            f"{stack.api}/api/v1/task?wait=20",
            body,
            headers={**stack.headers, "Idempotency-Key": key},
            timeout=30,
        )
        # The retry gets the task the first attempt began, and it is answered (not left for
        # the orphan sweeper, 15 minutes later).
        assert status == 200 and reply["id"] == task_id, reply
        assert reply["status"] == "succeeded" and reply["result"]["text"] == answer_for(body["prompt"])
