"""The drift signal: hysteresis through JSON, the settle table, reasons, and stored results read back."""

from __future__ import annotations

import json

import pytest

from baseline.drift import DriftResult, LatencyDriftSignal, settle
from baseline.drift_thresholds import DRIFT, INSUFFICIENT_DATA, OK, WARN, DriftThresholds
from baseline.ks import binned_ks_statistic
from baseline.stage_drift import BY_KS, BY_MIN_SAMPLES
from tests.baseline.drift_helpers import BASELINE_N, LIVE_N, histogram


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


def test_the_result_says_why_and_what_hysteresis_still_needs() -> None:
    signal = LatencyDriftSignal()
    baseline = {"model": histogram(1, BASELINE_N)}
    slow, same = {"model": histogram(2, LIVE_N, 1.3)}, {"model": histogram(3, LIVE_N)}
    slightly = {"model": histogram(4, LIVE_N, 1.15)}
    first = signal.evaluate(baseline, slow, now=1.0)
    assert first.hysteresis["entering"] and first.hysteresis["drift_needed"] == 1
    assert first.reason.startswith("warn: drifted in 1 evaluation(s) in a row, drift after 1 more")
    model = next(s for s in first.stages if s.stage == "model")
    assert model.decided_by in ("p50_ratio", "p95_ratio") and ">= drift_ratio 1.2" in model.reason
    drifted = signal.evaluate(baseline, slow, now=2.0, previous=first)
    assert drifted.reason.startswith("drift: model: KS D") and not drifted.hysteresis["held"]
    held_by_warn = signal.evaluate(baseline, slightly, now=3.0, previous=drifted)
    assert (held_by_warn.status, held_by_warn.raw_status) == (DRIFT, WARN)
    assert held_by_warn.hysteresis == {**held_by_warn.hysteresis, "held": True, "ok_needed": 2}
    assert "a warn never ends a drift" in held_by_warn.reason and "warn_ratio 1.1" in held_by_warn.reason
    held = signal.evaluate(baseline, same, now=4.0, previous=held_by_warn)
    assert held.hysteresis["ok_in_a_row"] == 1 and held.hysteresis["ok_needed"] == 1
    assert held.reason.startswith("drift held by hysteresis: every stage is ok again, 1 evaluation(s)")
    assert "1 more ok evaluation(s) in a row needed" in held.reason
    back = signal.evaluate(baseline, same, now=5.0, previous=held)
    assert back.status == OK and back.reason.startswith("ok:") and not back.hysteresis["held"]
    # What the API serves carries the reason and the hysteresis, and reads back as the same result.
    served = json.loads(json.dumps(held.to_dict()))
    assert served["reason"] == held.reason and served["hysteresis"]["ok_needed"] == 1
    assert served["stages"][0]["decided_by"] == BY_KS or served["stages"][0]["status"] != OK
    assert DriftResult.from_dict(served) == held


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


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        DriftThresholds(warn_ratio=0.9)
    with pytest.raises(ValueError):
        DriftResult.from_dict({"status": "drift"})
    with pytest.raises(ValueError):
        binned_ks_statistic({1: -1, 2: 3}, {1: 1})
    with pytest.raises(ValueError):
        binned_ks_statistic({"1": 3}, {"2": 1})  # type: ignore[dict-item]  # JSON keys must be turned back into ints


def test_a_stored_result_from_before_reasons_still_continues_hysteresis() -> None:
    stage = {
        "stage": "model",
        "status": DRIFT,
        "live_samples": 300,
        "baseline_samples": 900,
        "ks_statistic": 0.9,
        "ks_critical": 0.2,
        "p95_live_ms": 340.0,
        "p95_baseline_ms": 240.0,
        "p95_ratio": 1.42,
        "p99_ratio": 1.4,
    }
    thresholds = {k: v for k, v in DriftThresholds().to_dict().items() if k != "load_tolerance"}
    old = {
        "status": DRIFT,
        "raw_status": DRIFT,
        "drifted_stages": ["model"],
        "stages": [stage],
        "evaluated_at": 1.0,
        "consecutive": 3,
        "thresholds": thresholds,
    }
    previous = DriftResult.from_dict(old)
    assert previous.stages[0].decided_by == BY_MIN_SAMPLES and previous.load is None
    assert settle(OK, previous, DriftThresholds()) == (DRIFT, 1)
