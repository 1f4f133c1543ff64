"""The binned KS test: checked by hand, never wider than the exact one, and counting batches once."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from baseline.drift_thresholds import DRIFT, OK, DriftThresholds
from baseline.histogram import counts_of
from baseline.ks import binned_ks_statistic, ks_critical
from baseline.stage_drift import compare_stage
from baseline.traffic import Traffic
from tests.baseline.drift_helpers import DETECTION_BOUND, FALSE_ALARM_BOUND, MEDIAN_MS, SIGMA, TRIALS


def exact_ks(a: list[float], b: list[float]) -> float:
    """Unbinned two-sample KS D, straight from the definition."""
    a, b = sorted(a), sorted(b)
    return max(abs(sum(x <= v for x in a) / len(a) - sum(x <= v for x in b) / len(b)) for v in a + b)


def test_binned_ks_on_a_hand_computed_example() -> None:
    baseline = {10: 3, 11: 1}  # CDF at the edges of 10, 11, 12: 3/4, 1, 1
    live = {11: 2, 12: 2}  # 0, 1/2, 1
    assert binned_ks_statistic(baseline, live) == 0.75  # at bucket 10
    assert binned_ks_statistic(live, baseline) == 0.75
    assert binned_ks_statistic({5: 2, 6: 0}, {5: 7}) == 0.0


def test_ks_critical_matches_the_textbook_coefficients() -> None:
    # c(0.05) = 1.358 and c(0.001) = 1.949 in the usual tables.
    assert ks_critical(1, 1, 0.05) / math.sqrt(2) == pytest.approx(1.3581, abs=1e-4)
    assert ks_critical(1_000, 5_000, 0.001) == pytest.approx(1.9495 * math.sqrt(6_000 / 5e6), rel=1e-4)


def test_binning_never_widens_the_gap() -> None:
    rng = random.Random(5)
    for _ in range(20):
        a = [rng.lognormvariate(6, 0.3) for _ in range(60)]
        b = [rng.lognormvariate(6.05, 0.3) for _ in range(40)]
        assert binned_ks_statistic(counts_of(a), counts_of(b)) <= exact_ks(a, b) + 1e-12


def batched_histogram(seed: int, batches: int, size: int, scale: float = 1.0) -> Counter[int]:
    """Model-stage latencies: a batch's requests share one call, so one latency (within 0.2 %)."""
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(batches):
        call = scale * rng.lognormvariate(math.log(MEDIAN_MS), SIGMA)
        values += [call * (1 + 0.002 * rng.random()) for _ in range(size)]
    return counts_of(values)


def test_counting_batches_keeps_ks_honest_when_requests_share_a_call() -> None:
    """Measured over 300 trials (batches of 30; 100 baseline batches, 35 live): same distribution,
    KS rejected in 1 counting batches and in 299 counting requests (warn or drift in 105);
    x1.43 drifted in 298 counting batches."""
    thresholds = DriftThresholds(min_samples=40)
    size, baseline_batches, live_batches = 30, 100, 35
    base_traffic = Traffic(1.0, {size: baseline_batches * size})
    live_traffic = Traffic(1.0, {size: live_batches * size})
    alarms = rejections_by_request = detected = 0
    for trial in range(TRIALS):
        baseline = batched_histogram(30_000 + trial, baseline_batches, size)
        same = batched_histogram(40_000 + trial, live_batches, size)
        honest = compare_stage("model", baseline, same, thresholds, base_traffic, live_traffic)
        naive = compare_stage("model", baseline, same, thresholds)
        alarms += honest.status != OK
        rejections_by_request += naive.ks_statistic > naive.ks_critical  # type: ignore[operator]
        slow = batched_histogram(50_000 + trial, live_batches, size, 1.43)
        detected += (
            compare_stage("model", baseline, slow, thresholds, base_traffic, live_traffic).status == DRIFT
        )
    assert alarms <= FALSE_ALARM_BOUND
    assert rejections_by_request >= 90  # why requests are the wrong count
    assert detected >= DETECTION_BOUND
