"""Latency drift: binned KS by hand, false alarms and detection measured, hysteresis through JSON,
batches counted once, reasons, and whole slowdown-and-restore timelines replayed with time passed in."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from baseline.capture import capture
from baseline.drift import (
    BY_KS,
    BY_MIN_SAMPLES,
    BY_P50,
    DRIFT,
    INSUFFICIENT_DATA,
    OK,
    WARN,
    DriftResult,
    DriftThresholds,
    LatencyDriftSignal,
    Traffic,
    binned_ks_statistic,
    compare_load,
    compare_stage,
    ks_critical,
    settle,
)
from baseline.histogram import bucket_of, counts_of
from baseline.slots import SLOT_S, SlotData, slot_of
from workers.metrics_publisher import live_window

MEDIAN_MS = 600.0
SIGMA = 0.25
BASELINE_N = 5_000
LIVE_N = 1_000
TRIALS = 100
#: Same-distribution trials allowed to warn or drift (measured: 0 of 1,000; see baseline/drift.py).
FALSE_ALARM_BOUND = 2
#: x1.3 trials required to drift (measured: 1,000 of 1,000; see baseline/drift.py).
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


def test_a_batch_counts_once() -> None:
    traffic = Traffic(12.0, {6: 120})  # 120 requests in batches of 6: 20 batches
    assert (traffic.batches, traffic.mean_batch) == (20.0, 6.0)
    assert traffic.units(120) == 20.0
    assert traffic.units(130) == 30.0  # 10 cache hits count one each
    assert traffic.units(60) == 10.0
    assert Traffic(1.0).units(500) == 500.0  # unknown batching: every value counts
    assert Traffic(1.0, {4: 2, 1: 3}).batches == 3.5  # half a batch of 4 in this slot


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


# --- Whole timelines: a steady load, the model slowed, then restored -----------------------


@dataclass(frozen=True)
class Load:
    """A steady load as the metrics see it: batches finishing at a steady rate."""

    batch: int
    batches_per_s: float
    model_ms: float
    #: Share of calls slowed by CPU jitter, and by how much.
    jitter_share: float = 0.05
    jitter: float = 1.3


def requests_of(
    load: Load, seed: int, until: float, slow: tuple[float, float], factor: float
) -> list[Request]:
    """Every request of ``load`` until ``until``, its call x``factor`` when it finished within ``slow``."""
    rng = random.Random(seed)
    out = []
    t = 0.0
    while t < until:
        t += rng.expovariate(load.batches_per_s)
        call = load.model_ms * rng.lognormvariate(0, 0.02)
        if rng.random() < load.jitter_share:
            call *= load.jitter
        if slow[0] <= t < slow[1]:
            call *= factor
        for _ in range(load.batch):
            queued, batch_wait = rng.uniform(5, 40), rng.uniform(0, 100)
            total = queued + batch_wait + call + rng.uniform(1, 5)
            stages = {"queued": queued, "batch_wait": batch_wait, "model": call, "end_to_end": total}
            out.append(Request(t, {stage: bucket_of(ms) for stage, ms in stages.items()}, load.batch))
    return out


@dataclass(frozen=True)
class Request:
    finished_at: float
    buckets: dict[str, int]
    batch_size: int


class Metrics:
    """What the metric slots hold at any moment: each request lands in the slot of its finish."""

    def __init__(self, requests: list[Request]) -> None:
        self._by_slot: dict[int, list[Request]] = {}
        for request in requests:
            self._by_slot.setdefault(slot_of(request.finished_at), []).append(request)
        self._final = {slot: self._slot(found) for slot, found in self._by_slot.items()}

    @staticmethod
    def _slot(requests: list[Request]) -> SlotData:
        data = SlotData()
        for request in requests:
            for stage, bucket in request.buckets.items():
                data.histograms[stage][bucket] += 1
            data.counters["succeeded"] += 1
            data.batch_sizes[request.batch_size] += 1
        return data

    def at(self, now: float) -> dict[int, SlotData]:
        current = slot_of(now)
        slots = {slot: data for slot, data in self._final.items() if slot < current}
        slots[current] = self._slot([r for r in self._by_slot.get(current, []) if r.finished_at <= now])
        return slots


@pytest.mark.parametrize(
    ("load", "window_s", "min_samples"),
    [
        (Load(batch=6, batches_per_s=2.0, model_ms=236.0), 10, 40),  # the e2e test's stack
        (Load(batch=30, batches_per_s=2.2, model_ms=600.0), 60, 200),  # make run, waves of 60
    ],
    ids=["e2e", "make-run"],
)
@pytest.mark.parametrize("seed", range(4))
def test_a_slowdown_enters_drift_and_a_restore_leaves_it_within_three_windows(
    load: Load, window_s: int, min_samples: int, seed: int
) -> None:
    """Evaluated every 2 s as the metrics task does, on what the slots hold at that moment."""
    baseline_end = 3 * window_s + 20.0  # after a whole slot of warm-up
    slowed_at = baseline_end + 2 * window_s
    restored_at = slowed_at + 4 * window_s
    until = restored_at + 4 * window_s
    factor = 1.5 * 300 / 336  # overhead x1.5 of a 236 ms call of 300 ms cost: the call x1.34
    metrics = Metrics(requests_of(load, seed, until, (slowed_at, restored_at), factor))
    baseline = capture(
        metrics.at(until + SLOT_S),
        baseline_end - 2 * window_s,
        baseline_end,
        settings={},
        load={"source": "test"},
        created_at=0.0,
        git_revision="test",
    )
    signal = LatencyDriftSignal(DriftThresholds(min_samples=min_samples))
    base_traffic = Traffic(baseline.throughput_rps, baseline.batch_sizes)
    previous: DriftResult | None = None
    timeline: list[tuple[float, str]] = []
    now = baseline_end + 1.0
    while now < until:
        live, traffic = live_window(metrics.at(now), now, window_s)
        previous = signal.evaluate(
            baseline.histograms(), live, now, previous, baseline_traffic=base_traffic, live_traffic=traffic
        )
        assert previous.load is not None and previous.load.comparable, previous.reason
        timeline.append((now, previous.status))
        now += 2.0
    before = [status for t, status in timeline if t < slowed_at]
    assert set(before) == {OK}, before
    entered = next(t for t, status in timeline if t >= slowed_at and status == DRIFT)
    assert entered - slowed_at <= 3 * window_s
    after = [(t, status) for t, status in timeline if t >= restored_at]
    left = next(t for t, status in after if status == OK)
    assert left - restored_at <= 3 * window_s
    assert {status for t, status in after if t >= left} == {OK}  # no flapping once back
    assert {status for t, status in timeline if entered <= t < left} == {DRIFT}
