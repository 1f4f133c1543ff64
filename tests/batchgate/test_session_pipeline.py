"""Conversation sessions through the whole pipeline (API → Redis → worker(s) → simulator): turns
submitted back to back are answered in order, each with the history before it."""

from __future__ import annotations

import json
import secrets
import threading

import redis

from batchgate.keys import workers_key
from batching.simulator.answers import answer_for
from tests.conftest import Stack, create_key
from tests.harness import http_json, running, start_worker, wait_until


def submit(stack: Stack, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    status, _, reply = http_json("POST", f"{stack.api}/api/v1/tasks", body, headers=headers or stack.headers)
    return status, reply


def wait_task(stack: Stack, task_id: str) -> dict:
    status, _, body = http_json(
        "GET", f"{stack.api}/api/v1/tasks/{task_id}?wait=20", timeout=30, headers=stack.headers
    )
    assert status == 200, body
    return body


def sim_requests(stack: Stack) -> list[dict]:
    return http_json("GET", f"{stack.simulator}/_sim/requests")[2]["requests"]


def contents_for(stack: Stack, prompt: str) -> list[tuple[str, str]]:
    """The (role, text) turns of the model call that answered ``prompt`` alone."""
    for entry in reversed(sim_requests(stack)):
        contents = entry["body"]["contents"]
        if contents[-1]["parts"][-1]["text"] == prompt:
            return [(c.get("role", "user"), c["parts"][0]["text"]) for c in contents]
    raise AssertionError(f"no model call for {prompt!r}")


def run_conversation(stack: Stack, session: str, prompts: list[str]) -> list[dict]:
    """Submit every turn back to back (no waiting in between), then collect the answers."""
    ids = []
    for prompt in prompts:
        status, reply = submit(stack, {"prompt": prompt, "session_id": session})
        assert status == 202, reply
        ids.append(reply["id"])
    return [wait_task(stack, task_id) for task_id in ids]


def assert_conversation(stack: Stack, session: str, prompts: list[str], tasks: list[dict]) -> None:
    for prompt, task in zip(prompts, tasks, strict=True):
        assert task["status"] == "succeeded", task
        assert task["result"]["text"] == answer_for(prompt)
    # Answered in order: each turn finished after the one before it.
    finished = [t["finished_at"] for t in tasks]
    assert finished == sorted(finished), finished
    # Every turn landed, in order, and each call carried exactly the turns before it.
    status, _, body = http_json("GET", f"{stack.api}/api/v1/sessions/{session}", headers=stack.headers)
    assert status == 200, body
    expected = [turn for p in prompts for turn in (("user", p), ("model", answer_for(p)))]
    assert [(t["role"], t["text"]) for t in body["turns"]] == expected
    assert body["turns_submitted"] == body["turns_landed"] == len(prompts)
    for n, prompt in enumerate(prompts[1:], start=1):  # a first turn has no history: it may be packed
        assert contents_for(stack, prompt) == [*expected[: 2 * n], ("user", prompt)]


def test_turns_submitted_back_to_back_are_answered_in_order_with_their_history(stack: Stack) -> None:
    session = f"chat-{secrets.token_hex(4)}"
    prompts = [f"{session} turn {n}: tell me about step {n}" for n in range(1, 5)]
    tasks = run_conversation(stack, session, prompts)
    assert_conversation(stack, session, prompts, tasks)
    # At least two of the turns were in one batch (submitted within the window): still in order.
    assert max(t["timings"]["batch_size"] for t in tasks) >= 2


def test_session_tasks_skip_the_cache_and_belong_to_their_tenant(stack: Stack) -> None:
    session = f"own-{secrets.token_hex(4)}"
    prompt = f"{session}: a question asked twice"
    first = run_conversation(stack, session, [prompt, prompt])
    assert not any(t.get("cached") for t in first)
    other = {"X-API-Key": create_key(stack.env, "premium")}  # its own tenant
    assert http_json("GET", f"{stack.api}/api/v1/sessions/{session}", headers=other)[0] == 404
    assert http_json("DELETE", f"{stack.api}/api/v1/sessions/{session}", headers=other)[0] == 404
    assert http_json("DELETE", f"{stack.api}/api/v1/sessions/{session}", headers=stack.headers)[0] == 204
    status, _, body = http_json("GET", f"{stack.api}/api/v1/sessions/{session}", headers=stack.headers)
    assert status == 200 and body["turns"] == []
    assert http_json("GET", f"{stack.api}/api/v1/sessions/no-such-session", headers=stack.headers)[0] == 404
    status, reply = submit(stack, {"prompt": "x", "session_id": "bad id!"})
    assert status == 422 and reply["error"]["code"] == "invalid_request"


def test_turns_spread_over_two_workers_land_in_order(stack: Stack) -> None:
    sessions = [f"two-{secrets.token_hex(3)}-{n}" for n in range(6)]
    prompts = {s: [f"{s} turn {n}: what next?" for n in range(1, 5)] for s in sessions}
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    live_workers = workers_key(stack.env["BATCHGATE_KEY_PREFIX"])
    with running(start_worker(stack.logs_dir, stack.env, name="worker-2")):
        wait_until(lambda: client.zcard(live_workers) >= 2, 30, "the second worker consuming")
        client.close()
        results: dict[str, list[dict]] = {}
        threads = [
            threading.Thread(target=lambda s=s: results.update({s: run_conversation(stack, s, prompts[s])}))
            for s in sessions
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    for session in sessions:
        assert_conversation(stack, session, prompts[session], results[session])
    # Both workers answered, and some conversation had turns on each of them.
    workers = [{t["timings"]["worker"] for t in results[s]} for s in sessions]
    assert len(set().union(*workers)) == 2, workers
    assert any(len(w) == 2 for w in workers), workers


def test_a_failed_turn_does_not_block_the_next(stack: Stack) -> None:
    session = f"fail-{secrets.token_hex(4)}"
    prompts = [f"{session} one", f"{session} two [[sim:fail]]", f"{session} three"]
    tasks = run_conversation(stack, session, prompts)
    assert [t["status"] for t in tasks] == ["succeeded", "failed", "succeeded"]
    status, _, body = http_json("GET", f"{stack.api}/api/v1/sessions/{session}", headers=stack.headers)
    assert status == 200, body
    assert [t["text"] for t in body["turns"]] == [
        prompts[0],
        answer_for(prompts[0]),
        prompts[2],
        answer_for(prompts[2]),
    ]
    assert json.dumps(body).count("[[sim:fail]]") == 0
