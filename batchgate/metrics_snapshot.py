"""The metrics snapshot: sliding-window statistics computed from slots, a pure function.

Windows (1, 5 and 15 minutes) are the slots from the one holding ``now - window`` to the
current, partial one; rates divide by the time those slots actually cover (the window plus
up to one slot). The series
(for charts) holds one point per completed slot of the last five minutes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from baseline.histogram import merge, percentile
from baseline.slots import SLOT_S, STAGES, SlotData, slot_of

WINDOWS = {"1m": 60, "5m": 300, "15m": 900}
SERIES_SLOTS = 30
REJECTIONS = ("rejected_rate_limit", "rejected_in_flight", "rejected_backpressure")


def slots_needed(now: float) -> list[int]:
    """Every slot any window or the series reads, oldest first."""
    current = slot_of(now)
    return list(range(slot_of(now - max(WINDOWS.values())), current + 1))


def build_snapshot(
    slots: Mapping[int, SlotData], now: float, queue_depth: int, batch_max_size: int
) -> dict[str, Any]:
    """The snapshot published by the metrics task (see docs/observability.md)."""
    current = slot_of(now)
    windows = {}
    for name, seconds in WINDOWS.items():
        first = slot_of(now - seconds)  # the slot holding the window's start, partly
        covered = max(1e-9, now - first * SLOT_S)
        chosen = [slots[s] for s in range(first, current + 1) if s in slots]
        windows[name] = window_stats(chosen, covered, seconds, batch_max_size)
    series = []
    for slot in range(current - SERIES_SLOTS, current):
        data = slots.get(slot, SlotData())
        e2e = data.histograms["end_to_end"]
        finished = _finished(data.counters)
        series.append(
            {
                "t": float(slot * SLOT_S),
                "throughput_rps": round(finished / SLOT_S, 3),
                "tokens_per_s": round(
                    (data.counters["input_tokens"] + data.counters["output_tokens"]) / SLOT_S, 3
                ),
                "p50_ms": _round(percentile(e2e, 0.50)),
                "p95_ms": _round(percentile(e2e, 0.95)),
                "p99_ms": _round(percentile(e2e, 0.99)),
                "queue_depth": data.queue_depth,
            }
        )
    return {
        "generated_at": now,
        "queue_depth": queue_depth,
        "windows": windows,
        "series": series,
        "drift": None,
    }


def window_stats(
    chosen: list[SlotData], covered_s: float, window_s: int, batch_max_size: int
) -> dict[str, Any]:
    """Statistics of the slots of one window."""
    counters: Counter[str] = Counter()
    for data in chosen:
        counters.update(data.counters)
    histograms = {stage: merge(d.histograms[stage] for d in chosen) for stage in STAGES}
    batch_sizes = merge(d.batch_sizes for d in chosen)
    items_per_call = merge(d.items_per_call for d in chosen)
    finished = _finished(counters)
    answered = counters["succeeded"] + counters["cached"]
    batched = sum(batch_sizes.values())
    mean_batch = sum(size * n for size, n in batch_sizes.items()) / batched if batched else None
    return {
        "window_s": window_s,
        "covered_s": round(covered_s, 3),
        "requests": finished,
        "throughput_rps": round(finished / covered_s, 3),
        "tokens_per_s": {
            "input": round(counters["input_tokens"] / covered_s, 3),
            "output": round(counters["output_tokens"] / covered_s, 3),
            "total": round((counters["input_tokens"] + counters["output_tokens"]) / covered_s, 3),
        },
        "latency_ms": {stage: _percentiles(histograms[stage]) for stage in STAGES},
        "outcomes": {name: counters[name] for name in ("succeeded", "failed", "cached", *REJECTIONS)},
        "cache_hit_ratio": round(counters["cached"] / answered, 4) if answered else None,
        "batch_fill_ratio": round(mean_batch / batch_max_size, 4) if mean_batch else None,
        "batch_sizes": {str(size): n for size, n in sorted(batch_sizes.items())},
        "items_per_call": {str(size): n for size, n in sorted(items_per_call.items())},
    }


def _finished(counters: Mapping[str, int]) -> int:
    return counters.get("succeeded", 0) + counters.get("failed", 0) + counters.get("cached", 0)


def _percentiles(counts: Mapping[int, int]) -> dict[str, Any]:
    return {
        "p50": _round(percentile(counts, 0.50)),
        "p95": _round(percentile(counts, 0.95)),
        "p99": _round(percentile(counts, 0.99)),
        "count": sum(counts.values()),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
