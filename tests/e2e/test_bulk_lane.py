"""The bulk lane end to end: tasks sent with ``"lane": "bulk"`` are answered through the
simulator's Gemini Batch API (real API, worker, beat and google-genai SDK), packed into few
jobs, each with its own answer and the batch price on its usage."""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from typing import Any

import pytest

from api.errors import ApiError
from api.schemas import parse_task_request
from batching.simulator.answers import answer_for
from tests.clients import submit_and_collect
from tests.conftest import create_key, running_stack
from tests.harness import http_json, start_beat, start_worker, stop_all, wait_until

#: Fast enough for a test: dispatch every second, jobs polled twice a second, done in 2 s.
FAST_BULK = {
    "BATCHGATE_BULK_DISPATCH_S": "1",
    "BATCHGATE_BULK_POLL_S": "0.5",
    "BATCHGATE_SIM_BATCH_TURNAROUND_S": "2",
    "BATCHGATE_TIER_PREMIUM_RATE": "10000",
    "BATCHGATE_TIER_PREMIUM_BURST": "10000",
}


def test_500_bulk_tasks_take_at_most_two_batch_jobs_and_each_gets_its_own_answer(
    redis_url: str, logs_dir: Path
) -> None:
    with running_stack(redis_url, logs_dir, **FAST_BULK) as stack:
        beat = start_beat(logs_dir, stack.env, name="beat-bulk")
        try:
            prompts = [f"bulk question {n} {secrets.token_hex(3)}" for n in range(500)]
            bodies = [{"prompt": prompt, "lane": "bulk"} for prompt in prompts]
            run = submit_and_collect(stack.api, bodies, stack.api_key, timeout=120)
        finally:
            stop_all(beat)
        stats = http_json("GET", f"{stack.simulator}/_sim/stats")[2]
    assert not run.failures, run.failures[:5]
    for prompt, body in zip(prompts, run.bodies, strict=True):
        assert body is not None and body["status"] == "succeeded", body
        assert body["result"]["text"] == answer_for(prompt)
        assert body["result"]["usage"]["pricing"] == "batch"
        assert body["bulk"]["state"] == "JOB_STATE_SUCCEEDED" and body["bulk"]["job"].startswith("batches/")
    assert 1 <= stats["batch_jobs"] <= 2, stats
    assert stats["calls"] == 0  # no interactive call: every answer came from a batch job
    assert stats["batch_items"] < 500  # packed: fewer requests in the jobs than tasks


@pytest.mark.parametrize("extra", [{"stream": True}, {"session_id": "s1"}])
def test_a_bulk_task_cannot_stream_or_join_a_session(extra: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        parse_task_request({"prompt": "p", "lane": "bulk", **extra}, 1000, 1000)
    assert refused.value.status == 422 and "lane" in refused.value.message


def test_bulk_tasks_whose_jobs_keep_expiring_fail_clearly_after_their_attempts(
    redis_url: str, logs_dir: Path
) -> None:
    with running_stack(redis_url, logs_dir, **FAST_BULK, BATCHGATE_BULK_ATTEMPTS="2") as stack:
        assert http_json("POST", f"{stack.simulator}/_sim/config", {"batch_outcome": "expired"})[0] == 200
        beat = start_beat(logs_dir, stack.env, name="beat-bulk-expired")
        try:
            bodies = [
                {"prompt": f"never answered {n} {secrets.token_hex(3)}", "lane": "bulk"} for n in range(10)
            ]
            run = submit_and_collect(stack.api, bodies, stack.api_key, timeout=120)
        finally:
            stop_all(beat)
        stats = http_json("GET", f"{stack.simulator}/_sim/stats")[2]
    assert not run.failures, run.failures[:5]
    for body in run.bodies:
        assert body is not None and body["status"] == "failed", body
        assert body["error"]["code"] == "bulk_job_expired", body["error"]
        assert body["bulk"]["state"] == "JOB_STATE_EXPIRED"
    assert stats["batch_jobs"] == 2 and stats["calls"] == 0  # one job per attempt, then no more


def test_a_job_too_big_to_send_inline_goes_as_an_uploaded_jsonl_file(redis_url: str, logs_dir: Path) -> None:
    with running_stack(redis_url, logs_dir, **FAST_BULK, BATCHGATE_BULK_INLINE_MAX_BYTES="2000") as stack:
        beat = start_beat(logs_dir, stack.env, name="beat-bulk-file")
        try:
            prompts = [f"filed question {n} {secrets.token_hex(3)}" for n in range(40)]
            run = submit_and_collect(
                stack.api, [{"prompt": p, "lane": "bulk"} for p in prompts], stack.api_key
            )
        finally:
            stop_all(beat)
        files = http_json("GET", f"{stack.simulator}/v1beta/files")[2]
        stats = http_json("GET", f"{stack.simulator}/_sim/stats")[2]
    assert not run.failures, run.failures[:5]
    for prompt, body in zip(prompts, run.bodies, strict=True):
        assert body is not None and body["status"] == "succeeded", body
        assert body["result"]["text"] == answer_for(prompt) and body["result"]["usage"]["pricing"] == "batch"
    # The requests went up as a file and the results came back as one: both are stored files.
    assert len(files.get("files", [])) >= 2, files
    assert stats["batch_jobs"] == 1 and stats["calls"] == 0


def test_a_worker_killed_mid_job_leaves_its_bulk_tasks_to_the_next_job(
    redis_url: str, logs_dir: Path
) -> None:
    """Its job's answers die with it; once its lease lapses, a live worker puts its tasks back in
    line and the next dispatch sends them again: answered in a second job, not a day later."""
    slow = {**FAST_BULK, "BATCHGATE_SIM_BATCH_TURNAROUND_S": "600"}
    with running_stack(redis_url, logs_dir, **slow) as stack:
        beat = start_beat(logs_dir, stack.env, name="beat-bulk-kill")
        survivor = None
        try:
            prompts = [f"outlives a worker {n} {secrets.token_hex(3)}" for n in range(20)]
            ids = [
                http_json(
                    "POST", f"{stack.api}/api/v1/tasks", {"prompt": p, "lane": "bulk"}, headers=stack.headers
                )[2]["id"]
                for p in prompts
            ]

            def in_a_job() -> bool:
                body = http_json("GET", f"{stack.api}/api/v1/tasks/{ids[0]}", headers=stack.headers)[2]
                return str((body.get("bulk") or {}).get("job", "")).startswith("batches/")

            wait_until(in_a_job, 30, "the first batch job")
            stack.worker.stop(signal.SIGKILL)
            assert http_json("POST", f"{stack.simulator}/_sim/config", {"batch_turnaround_s": 2})[0] == 200
            survivor = start_worker(logs_dir, stack.env, name="worker-survivor")

            def answered() -> bool:
                bodies = [
                    http_json("GET", f"{stack.api}/api/v1/tasks/{t}", headers=stack.headers)[2] for t in ids
                ]
                return all(b["status"] in ("succeeded", "failed") for b in bodies)

            wait_until(answered, 60, "the bulk tasks answered by the survivor")
            bodies = [
                http_json("GET", f"{stack.api}/api/v1/tasks/{t}", headers=stack.headers)[2] for t in ids
            ]
            stats = http_json("GET", f"{stack.simulator}/_sim/stats")[2]
        finally:
            stop_all(beat, *([survivor] if survivor else []))
    for prompt, body in zip(prompts, bodies, strict=True):
        assert body["status"] == "succeeded" and body["result"]["text"] == answer_for(prompt), body
    assert stats["batch_jobs"] == 2 and stats["calls"] == 0  # the dead worker's job, then one more


def test_tenants_never_share_a_batch_job(redis_url: str, logs_dir: Path) -> None:
    """A job's fate (refused, failed, expired) is shared by everything in it: two tenants'
    bulk tasks, dispatched together, go in jobs of their own."""
    with running_stack(redis_url, logs_dir, **FAST_BULK) as stack:
        other = create_key(stack.env, "premium", tenant="bulk-other")
        beat = start_beat(logs_dir, stack.env, name="beat-bulk-tenants")
        try:
            bodies = [{"prompt": f"whose job {n} {secrets.token_hex(3)}", "lane": "bulk"} for n in range(20)]
            keys = [stack.api_key if n % 2 else other for n in range(20)]
            run = submit_and_collect(stack.api, bodies, keys)
        finally:
            stop_all(beat)
        stats = http_json("GET", f"{stack.simulator}/_sim/stats")[2]
    assert not run.failures, run.failures[:5]
    jobs: dict[str, set[str]] = {stack.api_key: set(), other: set()}
    for key, body, sent in zip(keys, run.bodies, bodies, strict=True):
        assert body is not None and body["status"] == "succeeded", body
        assert body["result"]["text"] == answer_for(sent["prompt"])
        jobs[key].add(body["bulk"]["job"])
    assert len(jobs[stack.api_key]) == 1 and len(jobs[other]) == 1
    assert jobs[stack.api_key].isdisjoint(jobs[other]) and stats["batch_jobs"] == 2
