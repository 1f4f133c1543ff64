"""One stage's verdict: false alarms and detection measured, too few samples, faster, and per request carried."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from baseline.drift import LatencyDriftSignal
from baseline.drift_thresholds import DRIFT, INSUFFICIENT_DATA, OK, WARN, DriftThresholds
from baseline.histogram import counts_of
from baseline.stage_drift import BY_P50, compare_stage
from baseline.traffic import Traffic
from tests.baseline.drift_helpers import (
    BASELINE_N,
    DETECTION_BOUND,
    FALSE_ALARM_BOUND,
    LIVE_N,
    TRIALS,
    histogram,
)

ONE_STAGE = DriftThresholds(stages=("end_to_end",))


def trial_statuses(scale: float) -> Counter[str]:
    """Raw status of TRIALS evaluations, each with a fresh baseline and a fresh live sample."""
    signal = LatencyDriftSignal(ONE_STAGE)
    statuses: Counter[str] = Counter()
    for trial in range(TRIALS):
        baseline = {"end_to_end": histogram(10_000 + trial, BASELINE_N)}
        live = {"end_to_end": histogram(20_000 + trial, LIVE_N, scale)}
        statuses[signal.evaluate(baseline, live, now=float(trial)).raw_status] += 1
    return statuses


def test_same_distribution_rarely_alarms() -> None:
    statuses = trial_statuses(1.0)
    assert statuses[DRIFT] == 0
    assert statuses[WARN] + statuses[DRIFT] <= FALSE_ALARM_BOUND, statuses


def test_thirty_percent_slower_is_detected() -> None:
    statuses = trial_statuses(1.3)
    assert statuses[DRIFT] >= DETECTION_BOUND, statuses


def test_too_few_samples_is_insufficient_data() -> None:
    baseline = histogram(1, BASELINE_N)
    few = compare_stage("model", baseline, histogram(2, 50, 2.0), DriftThresholds())
    assert few.status == INSUFFICIENT_DATA
    assert (few.live_samples, few.baseline_samples) == (50, BASELINE_N)
    assert few.ks_statistic is few.p95_ratio is None
    thin_baseline = compare_stage("model", histogram(3, 50), histogram(4, LIVE_N), DriftThresholds())
    assert thin_baseline.status == INSUFFICIENT_DATA
    result = LatencyDriftSignal().evaluate({}, {"model": histogram(5, LIVE_N)}, now=0.0)
    assert (result.status, result.raw_status, result.drifted_stages) == (INSUFFICIENT_DATA,) * 2 + ((),)


def test_faster_is_ok_and_drifted_stages_are_named() -> None:
    baseline = {stage: histogram(i, BASELINE_N) for i, stage in enumerate(DriftThresholds().stages)}
    live = {
        "end_to_end": histogram(11, LIVE_N, 1.3),
        "model": histogram(12, LIVE_N, 0.6),  # faster: KS rejects, yet ok
        "queued": histogram(13, LIVE_N),
        "batch_wait": histogram(14, 20),
    }
    result = LatencyDriftSignal(DriftThresholds(enter_after=1)).evaluate(baseline, live, now=1.5e9)
    by_stage = {s.stage: s for s in result.stages}
    assert by_stage["model"].status == OK
    assert by_stage["model"].ks_statistic > by_stage["model"].ks_critical  # type: ignore[operator]
    assert by_stage["model"].p95_ratio < 1  # type: ignore[operator]
    assert by_stage["batch_wait"].status == INSUFFICIENT_DATA
    assert (result.status, result.raw_status, result.drifted_stages) == (DRIFT, DRIFT, ("end_to_end",))
    assert json.loads(json.dumps(result.to_dict()))["stages"][0]["stage"] == "end_to_end"


def test_zero_ms_baseline_does_not_divide_by_zero() -> None:
    zeros = {0: 500}
    assert compare_stage("batch_wait", zeros, zeros, DriftThresholds()).status == OK
    late = compare_stage("batch_wait", zeros, histogram(1, 500), DriftThresholds())
    assert late.status == DRIFT and late.p95_ratio is not None and math.isfinite(late.p95_ratio)


def test_a_baseline_p95_inflated_by_one_slow_batch_does_not_hide_a_slowdown() -> None:
    """The e2e failure, measured: 8 baseline batches of 6, one of them cold (299.5 ms, the rest
    231.5); every call then x1.43. The p95 ratio was 1.10, the median's 1.43."""
    baseline = counts_of([231.5] * 42 + [299.5] * 6)
    live = counts_of([331.0] * 132)
    stage = compare_stage(
        "model",
        baseline,
        live,
        DriftThresholds(min_samples=40),
        Traffic(4.8, {6: 48}),
        Traffic(13.2, {6: 132}),
    )
    assert stage.p95_ratio is not None and stage.p95_ratio < 1.2
    assert (stage.status, stage.decided_by) == (DRIFT, BY_P50)
    assert stage.live_units == 22.0 and stage.baseline_units == 8.0
    assert "p50 x1.43 >= drift_ratio 1.2" in stage.reason


def test_the_model_stage_is_judged_per_request_its_calls_carry() -> None:
    """Measured on make run after a slowdown and restore under waves of 60: the waves settled
    into batches of 28 instead of 19.6, each call carried x1.43 the requests and took x1.37 as
    long (p50), while end to end was unchanged. Per request carried that is x0.96: ok."""
    baseline = counts_of([450.0] * 2000)  # 100 batches of 20
    restored = counts_of([612.0] * 2800)  # 100 batches of 28: bigger calls (x1.36), same model
    slowed = counts_of([875.0] * 2800)  # and then every call x1.43 as well
    base, bigger = Traffic(40.0, {20: 2000}), Traffic(56.0, {28: 2800})
    thresholds = DriftThresholds()
    same_model = compare_stage("model", baseline, restored, thresholds, base, bigger)
    assert same_model.p50_ratio is not None and same_model.p50_ratio > 1.3
    assert same_model.batch_ratio == 1.4 and same_model.status == OK
    assert "over batches x1.40 the baseline's size" in same_model.reason
    slower_model = compare_stage("model", baseline, slowed, thresholds, base, bigger)
    assert slower_model.status == DRIFT and slower_model.effect == pytest.approx(1.39, abs=0.02)
    assert "per request carried" in slower_model.reason
    # Only bigger batches are discounted, and only on the stage that times one call.
    smaller = compare_stage("model", restored, baseline, thresholds, bigger, base)
    assert smaller.batch_ratio is None and smaller.effect == pytest.approx(smaller.p95_ratio, abs=1e-4)
    end_to_end = compare_stage("end_to_end", baseline, restored, thresholds, base, bigger)
    assert end_to_end.status == DRIFT and end_to_end.batch_ratio is None
