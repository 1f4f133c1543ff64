"""Metrics end to end: the snapshot agrees with what the clients were told, and Prometheus
text is well-formed. Real Redis, simulator, worker, beat and API."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baseline.histogram import RELATIVE_ERROR
from tests.clients import submit_and_collect
from tests.conftest import Stack
from tests.harness import Process, http_json, start_beat, wait_until


@pytest.fixture(scope="module")
def beat(stack: Stack, logs_dir: Path) -> Iterator[Process]:
    proc = start_beat(logs_dir, stack.env)
    try:
        yield proc
    finally:
        proc.stop()


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def snapshot(stack: Stack) -> dict:
    status, _, body = http_json("GET", f"{stack.api}/api/v1/metrics", headers=stack.headers)
    assert status == 200, body
    return body


def test_snapshot_percentiles_agree_with_the_clients_timings(stack: Stack, beat: Process) -> None:
    run = submit_and_collect(
        stack.api, [{"prompt": f"observe {i}"} for i in range(200)], api_key=stack.api_key
    )
    assert all(b is not None and b["status"] == "succeeded" for b in run.bodies)
    told = [b["timings"]["total_ms"] for b in run.bodies if b]

    def caught_up() -> dict | None:
        status, _, body = http_json("GET", f"{stack.api}/api/v1/metrics", headers=stack.headers)
        return body if status == 200 and body["windows"]["1m"]["requests"] == 200 else None

    window = wait_until(caught_up, 30, "a snapshot covering the 200 requests")["windows"]["1m"]
    latency = window["latency_ms"]["end_to_end"]
    assert latency["count"] == 200
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        truth = exact(told, q)
        assert abs(latency[name] - truth) <= truth * RELATIVE_ERROR + 1e-6, (name, latency[name], truth)
    assert sum(window["batch_sizes"].values()) == 200
    assert window["outcomes"]["succeeded"] == 200
    assert window["tokens_per_s"]["total"] > 0 and window["batch_fill_ratio"] > 0
    assert snapshot(stack)["cost_ms"]["cpu"] < 200  # the task stays cheap


def test_metrics_stream_sends_snapshots(stack: Stack, beat: Process) -> None:
    import urllib.request

    request = urllib.request.Request(f"{stack.api}/api/v1/metrics/stream", headers=stack.headers)
    with urllib.request.urlopen(request, timeout=15) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = []
        while len([line for line in lines if line.startswith(b"data: ")]) < 2:
            lines.append(response.readline())
    assert lines[0] == b"event: metrics\n"


def test_prometheus_text_parses_and_counts_requests(stack: Stack, beat: Process) -> None:
    def posts_seen() -> float:
        status, _, text = http_json("GET", f"{stack.api}/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = families["batchgate_http_requests"].samples
        return sum(
            s.value for s in samples if s.labels["method"] == "POST" and s.labels["route"] == "/api/v1/tasks"
        )

    before = posts_seen()
    for i in range(7):
        http_json("POST", f"{stack.api}/api/v1/tasks", {"prompt": f"counted {i}"}, headers=stack.headers)
    assert posts_seen() == before + 7
    _, _, text = http_json("GET", f"{stack.api}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"batchgate_requests", "batchgate_latency_seconds", "batchgate_queue_depth"} <= set(families)
    buckets = [s for s in families["batchgate_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert any(s.labels["le"] == "+Inf" and s.value >= 200 for s in buckets)
