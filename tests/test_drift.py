"""Latency drift: binned KS by hand, false alarms and detection measured, hysteresis through JSON."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest

from baseline.drift import (
    DRIFT,
    INSUFFICIENT_DATA,
    OK,
    WARN,
    DriftResult,
    DriftThresholds,
    LatencyDriftSignal,
    binned_ks_statistic,
    compare_stage,
    ks_critical,
    settle,
)
from batchgate.histogram import counts_of

MEDIAN_MS = 600.0
SIGMA = 0.25
BASELINE_N = 5_000
LIVE_N = 1_000
TRIALS = 100
#: Same-distribution trials allowed to warn or drift (measured: 0; see baseline/drift.py).
FALSE_ALARM_BOUND = 2
#: x1.3 trials required to drift (measured: 100; see baseline/drift.py).
DETECTION_BOUND = 95
ONE_STAGE = DriftThresholds(stages=("end_to_end",))


def latencies(seed: int, n: int, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(math.log(MEDIAN_MS), SIGMA) for _ in range(n)]


def histogram(seed: int, n: int, scale: float = 1.0) -> Counter[int]:
    return counts_of(latencies(seed, n, scale))


def trial_statuses(scale: float) -> Counter[str]:
    """Raw status of TRIALS evaluations, each with a fresh baseline and a fresh live sample."""
    signal = LatencyDriftSignal(ONE_STAGE)
    statuses: Counter[str] = Counter()
    for trial in range(TRIALS):
        baseline = {"end_to_end": histogram(10_000 + trial, BASELINE_N)}
        live = {"end_to_end": histogram(20_000 + trial, LIVE_N, scale)}
        statuses[signal.evaluate(baseline, live, now=float(trial)).raw_status] += 1
    return statuses


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


def test_hysteresis_with_state_kept_only_as_json() -> None:
    signal = LatencyDriftSignal()
    baseline = {"model": histogram(1, BASELINE_N)}
    slow = {"model": histogram(2, LIVE_N, 1.3)}
    same = {"model": histogram(3, LIVE_N)}
    previous: DriftResult | None = None
    seen = []
    for now, live in enumerate([slow, slow, same, same]):
        result = signal.evaluate(baseline, live, now=1_000.0 + now, previous=previous)
        seen.append((result.raw_status, result.status, result.consecutive))
        stored = json.dumps(result.to_dict())
        previous = DriftResult.from_dict(json.loads(stored))
        assert previous == result
    assert seen == [(DRIFT, WARN, 1), (DRIFT, DRIFT, 2), (OK, DRIFT, 1), (OK, OK, 2)]


@pytest.mark.parametrize(
    ("previous_status", "previous_raw", "previous_consecutive", "raw", "expected"),
    [
        (None, None, 0, DRIFT, (WARN, 1)),
        (WARN, DRIFT, 1, DRIFT, (DRIFT, 2)),
        (WARN, WARN, 3, DRIFT, (WARN, 1)),  # a warn run is not a drift run
        (None, None, 0, WARN, (WARN, 1)),  # warn passes straight through
        (DRIFT, DRIFT, 5, WARN, (DRIFT, 1)),  # warn does not end a drift
        (DRIFT, OK, 1, DRIFT, (DRIFT, 1)),  # back to drift before it was left
        (DRIFT, DRIFT, 5, OK, (DRIFT, 1)),
        (DRIFT, OK, 1, OK, (OK, 2)),
        (DRIFT, DRIFT, 5, INSUFFICIENT_DATA, (DRIFT, 1)),  # no leaving drift for lack of data
        (DRIFT, INSUFFICIENT_DATA, 1, OK, (DRIFT, 1)),  # and the ok run starts afresh
        (WARN, WARN, 2, INSUFFICIENT_DATA, (INSUFFICIENT_DATA, 1)),
        (OK, OK, 9, OK, (OK, 10)),
    ],
)
def test_settle_table(
    previous_status: str | None,
    previous_raw: str | None,
    previous_consecutive: int,
    raw: str,
    expected: tuple[str, int],
) -> None:
    previous = None
    if previous_status is not None and previous_raw is not None:
        previous = DriftResult(
            previous_status, previous_raw, (), (), 0.0, previous_consecutive, DriftThresholds()
        )
    assert settle(raw, previous, DriftThresholds()) == expected


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


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        DriftThresholds(warn_ratio=0.9)
    with pytest.raises(ValueError):
        DriftResult.from_dict({"status": "drift"})
    with pytest.raises(ValueError):
        binned_ks_statistic({1: -1, 2: 3}, {1: 1})
    with pytest.raises(ValueError):
        binned_ks_statistic({"1": 3}, {"2": 1})  # type: ignore[dict-item]  # JSON keys must be turned back into ints
