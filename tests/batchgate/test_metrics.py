"""The metrics collector on a real Redis and the snapshot's windows, with injected times."""

from __future__ import annotations

import secrets

import pytest
import redis

from batchgate.metrics_snapshot import build_snapshot, slots_needed
from batchgate.metrics_store import TOTAL, InferenceMetricsCollector, RequestRecord


@pytest.fixture
def collector(redis_client: redis.Redis) -> InferenceMetricsCollector:
    return InferenceMetricsCollector(redis_client, f"met-{secrets.token_hex(4)}")


def done(
    at: float, e2e: float, outcome: str = "succeeded", batch: int = 4, tokens: int = 10
) -> RequestRecord:
    return RequestRecord(
        outcome=outcome,
        finished_at=at,
        end_to_end_ms=e2e,
        queued_ms=1.0,
        batch_wait_ms=e2e / 4,
        model_ms=e2e / 2,
        batch_size=batch,
        items_in_call=batch,
        input_tokens=tokens,
        output_tokens=2 * tokens,
    )


def test_records_land_in_slots_and_totals(collector: InferenceMetricsCollector) -> None:
    collector.record([done(1000.0, 100.0), done(1005.0, 200.0), done(1012.0, 300.0, outcome="failed")])
    slots = collector.read([100, 101, TOTAL])
    assert slots[100].counters["succeeded"] == 2 and slots[101].counters["failed"] == 1
    assert sum(slots[TOTAL].histograms["end_to_end"].values()) == 3
    assert slots[TOTAL].counters["input_tokens"] == 30 and slots[TOTAL].counters["output_tokens"] == 60
    assert slots[100].batch_sizes == {4: 2}


def test_windows_rates_and_percentiles(collector: InferenceMetricsCollector) -> None:
    now = 10_000.0
    # 60 requests in the last minute (p50 ~ 100 ms), 220 more in the four minutes before.
    recent = [done(now - 55 + i * 0.9, 100.0 + i % 3) for i in range(60)]
    older = [done(now - 290 + i, 400.0, batch=8) for i in range(220)]
    cached = [RequestRecord(outcome="cached", finished_at=now - 5, end_to_end_ms=2.0)]
    collector.record(recent + older + cached)
    collector.record_queue_depth(7, now=now - 15)
    snapshot = build_snapshot(collector.read(slots_needed(now)), now, queue_depth=3, batch_max_size=8)

    one, five = snapshot["windows"]["1m"], snapshot["windows"]["5m"]
    assert one["requests"] == 61 and five["requests"] == 281
    assert one["outcomes"]["cached"] == 1 and one["cache_hit_ratio"] == round(1 / 61, 4)
    assert 100 * 0.99 <= one["latency_ms"]["end_to_end"]["p50"] <= 102 * 1.01
    assert five["latency_ms"]["end_to_end"]["p95"] == pytest.approx(400.0, rel=0.01)
    assert one["throughput_rps"] == pytest.approx(61 / 60, rel=0.01)
    assert one["batch_sizes"] == {"4": 60}
    assert five["batch_fill_ratio"] == pytest.approx((60 * 4 + 220 * 8) / 280 / 8, rel=1e-3)
    assert sum(five["batch_sizes"].values()) == 280  # one entry per processed (not cached) request
    assert snapshot["queue_depth"] == 3 and len(snapshot["series"]) == 30
    assert [p["queue_depth"] for p in snapshot["series"]][-2] == 7


def test_rejections_from_admission_are_counted(redis_client: redis.Redis) -> None:
    from api.admission import Admission

    prefix = f"met-{secrets.token_hex(4)}"
    admission = Admission(redis_client, prefix, f"{prefix}-q", 1000, 10)
    for _ in range(3):
        admission.admit("k", rate=1.0, burst=1, now=500.0)
    collector = InferenceMetricsCollector(redis_client, prefix)
    snapshot = build_snapshot(collector.read(slots_needed(505.0)), 505.0, 0, 8)
    assert snapshot["windows"]["1m"]["outcomes"]["rejected_rate_limit"] == 2
    assert collector.read([TOTAL])[TOTAL].counters["rejected_rate_limit"] == 2
