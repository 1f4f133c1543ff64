"""Whole slowdown-and-restore timelines replayed with time passed in, evaluated as the metrics task does."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from baseline.capture import capture
from baseline.drift import DriftResult, LatencyDriftSignal
from baseline.drift_thresholds import DRIFT, OK, DriftThresholds
from baseline.histogram import bucket_of
from baseline.slots import SLOT_S, SlotData, slot_of
from baseline.traffic import Traffic
from workers.metrics_publisher import live_window

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
