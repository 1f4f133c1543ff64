"""Backpressure end to end: with the worker stopped the queue fills to its high-water mark,
further submissions get 503, and every admitted request is answered once a worker returns."""

from __future__ import annotations

from pathlib import Path

from batching.simulator.answers import answer_for
from tests.clients import submit_and_collect
from tests.conftest import create_key, stack_env
from tests.harness import http_json, start_api, start_simulator, start_worker, stop_all, wait_until

HIGH_WATER = 20


def test_overload_is_refused_and_nothing_admitted_is_lost(redis_url: str, logs_dir: Path) -> None:
    env = stack_env(redis_url, BATCHGATE_QUEUE_HIGH_WATER=str(HIGH_WATER), BATCHGATE_QUEUE_LOW_WATER="5")
    key = create_key(env, "premium")
    headers = {"X-API-Key": key}
    sim, sim_url = start_simulator(logs_dir, env)
    env["BATCHGATE_SIMULATOR_URL"] = sim_url
    api, api_url = start_api(logs_dir, env)
    worker = None
    try:
        admitted: list[tuple[str, str]] = []
        refused = []
        for i in range(HIGH_WATER + 5):
            prompt = f"backlog item {i}"
            status, headers_seen, body = http_json(
                "POST", f"{api_url}/api/v1/tasks", {"prompt": prompt}, headers=headers
            )
            if status == 202:
                admitted.append((body["id"], prompt))
                assert int(headers_seen["X-Queue-Depth"]) == len(admitted)
            else:
                refused.append((status, headers_seen, body))
        assert len(admitted) == HIGH_WATER
        assert len(refused) == 5
        for status, headers_seen, body in refused:
            assert status == 503 and body["error"]["code"] == "overloaded"
            assert int(headers_seen["Retry-After"]) >= 1 and int(headers_seen["X-Queue-Depth"]) == HIGH_WATER

        worker = start_worker(logs_dir, env)
        for task_id, prompt in admitted:
            status, _, task = http_json(
                "GET", f"{api_url}/api/v1/tasks/{task_id}?wait=20", timeout=30, headers=headers
            )
            assert status == 200 and task["status"] == "succeeded", task
            assert task["result"]["text"] == answer_for(prompt)

        # Drained below the low-water mark: admitted again.
        wait_until(lambda: http_json("GET", f"{api_url}/ready")[0] == 200, 20, "worker ready")
        run = submit_and_collect(api_url, [{"prompt": "after the storm"}], api_key=key)
        assert run.bodies[0] is not None and run.bodies[0]["status"] == "succeeded"
    finally:
        stop_all(api, worker, sim)
