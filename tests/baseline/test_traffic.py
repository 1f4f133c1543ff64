"""The load behind the latencies: a batch counts once, loads compared, and the live window's slots."""

from __future__ import annotations

from collections import Counter

import pytest

from baseline.drift import LatencyDriftSignal
from baseline.histogram import counts_of
from baseline.slots import SlotData
from baseline.traffic import Traffic, compare_load
from tests.baseline.drift_helpers import BASELINE_N, LIVE_N, histogram
from workers.metrics_publisher import live_window


def test_a_batch_counts_once() -> None:
    traffic = Traffic(12.0, {6: 120})  # 120 requests in batches of 6: 20 batches
    assert (traffic.batches, traffic.mean_batch) == (20.0, 6.0)
    assert traffic.units(120) == 20.0
    assert traffic.units(130) == 30.0  # 10 cache hits count one each
    assert traffic.units(60) == 10.0
    assert Traffic(1.0).units(500) == 500.0  # unknown batching: every value counts
    assert Traffic(1.0, {4: 2, 1: 3}).batches == 3.5  # half a batch of 4 in this slot


def test_the_loads_are_compared_and_a_different_load_is_named() -> None:
    alike = compare_load(Traffic(60.0, {30: 3000}), Traffic(45.0, {25: 2500}), 2.0)
    assert alike.comparable and alike.note() == ""
    # make baseline's 8 clients against waves of 60 (measured at make run defaults).
    other = compare_load(Traffic(19.4, {8: 968}), Traffic(62.4, {30: 3600}), 2.0)
    assert not other.comparable and other.rps_ratio == pytest.approx(3.216, abs=1e-3)
    assert "62.4 vs 19.4 req/s, mean batch 30.0 vs 8.0" in other.note()
    baseline = {"model": histogram(1, BASELINE_N)}
    result = LatencyDriftSignal().evaluate(
        baseline,
        {"model": histogram(2, LIVE_N, 2.2)},
        now=1.0,
        baseline_traffic=Traffic(19.4, {8: BASELINE_N}),
        live_traffic=Traffic(62.4, {30: LIVE_N}),
    )
    assert result.load == compare_load(Traffic(19.4, {8: BASELINE_N}), Traffic(62.4, {30: LIVE_N}), 2.0)
    assert "capture a baseline at this load" in result.reason
    assert result.to_dict()["load"]["comparable"] is False


def slot_with(values: dict[str, list[float]], batch_size: int) -> SlotData:
    data = SlotData()
    for stage, stage_values in values.items():
        data.histograms[stage] = counts_of(stage_values)
    requests = len(values["end_to_end"])
    data.counters = Counter({"succeeded": requests})
    data.batch_sizes = Counter({batch_size: requests})
    return data


def test_the_live_window_is_its_whole_slots_and_the_current_one() -> None:
    slots = {s: slot_with({"end_to_end": [100.0] * 60}, 6) for s in range(98, 103)}
    histograms, traffic = live_window(slots, now=1025.0, window_s=20)  # slots 100-102, 25 s
    assert sum(histograms["end_to_end"].values()) == 180 and sum(histograms["model"].values()) == 0
    assert traffic.requests_per_s == pytest.approx(180 / 25)
    assert traffic.batches == 30.0
