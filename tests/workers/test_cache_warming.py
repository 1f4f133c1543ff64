"""Cache warming: rate-bounded pre-computation into the response cache, through a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from batchgate.apikeys import hash_key
from batchgate.response_cache import ResponseCache, cache_key
from batchgate.settings import Settings
from batchgate.tenants import own_tenant
from batching.simulator.answers import answer_for
from tests.conftest import Stack, create_key
from tests.harness import REPO, http_json
from workers.cache_warming import load_queries, warm
from workers.runtime import WorkerRuntime


def test_load_queries_reads_json_arrays_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}]))
    (tmp_path / "b.jsonl").write_text('{"prompt": "a"}\n\n{"prompt": "b", "system": "s"}\n')
    assert [q["prompt"] for q in load_queries(tmp_path / "a.json")] == ["a", "b"]
    assert load_queries(tmp_path / "b.jsonl")[1]["system"] == "s"


def test_warm_is_rate_bounded_and_caches_only_fresh_cacheable_successes(stack: Stack) -> None:
    settings = Settings.from_env({**stack.env, "BATCHGATE_BATCH_MAX_SIZE": "4"})
    runtime = WorkerRuntime(settings)
    cache = ResponseCache(
        redis.Redis.from_url(stack.redis_url, decode_responses=True), settings.broker.key_prefix, 60
    )
    tenant = "acme"
    known = cache_key({"model": settings.gemini.model, "prompt": "already known"})
    cache.put_many([(cache.record_key(tenant, known), {"text": "old"})])
    queries = [{"prompt": f"common question {i}"} for i in range(10)]
    queries += [{"prompt": "already known"}, {"prompt": "news today"}, {"prompt": 3}]
    sleeps: list[float] = []
    now = [0.0]

    def fake_sleep(seconds: float) -> None:  # time is driven by the test: no real waiting
        sleeps.append(seconds)
        now[0] += seconds

    report = warm(
        queries, tenant, settings, cache, runtime.run_engine, 4.0, sleep=fake_sleep, clock=lambda: now[0]
    )
    assert (report.cached, report.already_cached, report.time_sensitive, report.invalid, report.failed) == (
        10,
        1,
        1,
        1,
        0,
    )
    assert sleeps == [1.0, 1.0]  # chunks of 4 at 4/s: the 2nd and 3rd chunk wait their turn
    for i in range(10):
        digest = cache_key({"model": settings.gemini.model, "prompt": f"common question {i}"})
        entry = cache.get(tenant, digest)
        assert entry is not None and entry["text"] == answer_for(f"common question {i}")
        assert cache.get("another-tenant", digest) is None


def test_make_warm_cache_fills_the_cache_through_the_worker(stack: Stack, tmp_path: Path) -> None:
    tenant = own_tenant(hash_key(stack.api_key))  # the stack's key is its own tenant
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        "\n".join(json.dumps({"prompt": f"faq {i}: how do I reset my password?"}) for i in range(6))
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workers.warm_cli",
            str(queries),
            "--tenant",
            tenant,
            "--rate",
            "50",
            "--timeout",
            "60",
        ],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cached"] == 6 and report["failed"] == 0
    items = stack.sim_stats()["items"]
    status, _, task = http_json(
        "POST",
        f"{stack.api}/api/v1/tasks",
        {"prompt": "faq 3: how do I reset my password?"},
        headers=stack.headers,
    )
    assert status == 200 and task["cached"] is True
    assert task["result"]["text"] == answer_for("faq 3: how do I reset my password?")
    assert stack.sim_stats()["items"] == items
    # Another tenant asking the same is not answered from this tenant's warmed entry.
    other = {"X-API-Key": create_key(stack.env, "premium")}
    status, _, theirs = http_json(
        "POST", f"{stack.api}/api/v1/tasks", {"prompt": "faq 3: how do I reset my password?"}, headers=other
    )
    assert status == 202 and "cached" not in theirs
