"""The metrics task's work: read the slots, build the snapshot, judge drift, publish it.

Completed slots never change again, so each process keeps the ones it has read and only
fetches the last two slots per run; a run then costs two small Redis round trips plus the
merge of at most 91 slots' histograms in Python (its cost is measured and published).
When a baseline is active, every run evaluates the LatencyDriftSignal on the last
``drift_window_s`` against it, continuing the hysteresis of the previous result stored in
Redis (whichever worker ran it), and publishes the result inside the snapshot. Each side's
traffic (request rate, batch sizes) goes with its histograms: the signal counts batches,
not requests, as independent observations, and says when the live load is not the
baseline's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis

from baseline.drift import DriftResult, LatencyDriftSignal, Traffic
from baseline.histogram import merge
from baseline.model import BaselineError
from baseline.slots import SLOT_S, STAGES, SlotData, slot_of
from batchgate.baseline_store import BaselineStore
from batchgate.keys import metrics_channel, metrics_latest_key
from batchgate.metrics_snapshot import build_snapshot, slots_needed
from batchgate.metrics_store import OUTCOMES, InferenceMetricsCollector

log = logging.getLogger(__name__)


class MetricsPublisher:
    """Builds and publishes snapshots; safe to call from several pool threads."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        queue: str,
        batch_max_size: int,
        drift: LatencyDriftSignal | None = None,
        drift_window_s: int = 60,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._queue = queue
        self._batch_max_size = batch_max_size
        self._drift = drift or LatencyDriftSignal()
        self._drift_window_s = drift_window_s
        self._baselines = BaselineStore(client, prefix)
        self._collector = InferenceMetricsCollector(client, prefix)
        self._final: dict[int, SlotData] = {}
        self._lock = threading.Lock()

    def publish(self, now: float | None = None) -> dict[str, Any]:
        started, cpu_started = time.perf_counter(), time.thread_time()
        now = time.time() if now is None else now
        depth = int(self._redis.llen(self._queue))
        self._collector.record_queue_depth(depth, now)
        with self._lock:
            slots = self._slots(now)
        snapshot = build_snapshot(slots, now, depth, self._batch_max_size)
        snapshot["drift"] = self._judge_drift(slots, now)
        snapshot["cost_ms"] = {
            "wall": round((time.perf_counter() - started) * 1000, 3),
            "cpu": round((time.thread_time() - cpu_started) * 1000, 3),
        }
        payload = json.dumps(snapshot, separators=(",", ":"))
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(metrics_latest_key(self._prefix), payload, ex=300)
        pipe.publish(metrics_channel(self._prefix), payload)
        pipe.execute()
        return snapshot

    def _judge_drift(self, slots: dict[int, SlotData], now: float) -> dict[str, Any] | None:
        """The drift signal for the live window (None without an active baseline); stored."""
        try:
            baseline = self._baselines.active()
        except BaselineError as exc:
            log.error("the active baseline cannot be used: %s", exc)
            return None
        if baseline is None:
            return None
        previous: DriftResult | None = None
        stored = self._baselines.last_drift()
        if stored is not None and stored.get("baseline_created_at") == baseline.created_at:
            try:
                previous = DriftResult.from_dict(stored)
            except (ValueError, KeyError, TypeError):
                previous = None
        live, live_traffic = live_window(slots, now, self._drift_window_s)
        result = self._drift.evaluate(
            baseline.histograms(),
            live,
            now,
            previous,
            baseline_traffic=Traffic(baseline.throughput_rps, baseline.batch_sizes),
            live_traffic=live_traffic,
        )
        payload = {
            **result.to_dict(),
            "baseline_created_at": baseline.created_at,
            "baseline_fingerprint": baseline.settings_fingerprint,
            "window_s": self._drift_window_s,
        }
        self._baselines.save_drift(payload)
        return payload

    def _slots(self, now: float) -> dict[int, SlotData]:
        needed = slots_needed(now)
        # A record lands in the slot of its finish time; writers lag by far less than a slot,
        # so anything older than the previous slot is final.
        final_before = slot_of(now) - 1
        to_read: list[int | str] = [s for s in needed if s >= final_before or s not in self._final]
        fresh = self._collector.read(to_read)
        for slot, data in fresh.items():
            if isinstance(slot, int) and slot < final_before:
                self._final[slot] = data
        for slot in [s for s in self._final if s < needed[0]]:
            del self._final[slot]
        merged: dict[int, SlotData] = {s: self._final[s] for s in needed if s in self._final}
        merged.update({s: d for s, d in fresh.items() if isinstance(s, int)})
        return merged


def live_window(
    slots: Mapping[int, SlotData], now: float, window_s: int
) -> tuple[dict[str, Counter[int]], Traffic]:
    """Per-stage histograms and the traffic of the last ``window_s``: its whole slots and the current one.

    The window thus covers between ``window_s`` and ``window_s + SLOT_S`` seconds; the
    request rate divides by what it covers.
    """
    current = slot_of(now)
    first = current - window_s // SLOT_S
    chosen = [slots[s] for s in range(first, current + 1) if s in slots]
    histograms = {stage: merge(d.histograms[stage] for d in chosen) for stage in STAGES}
    finished = sum(d.counters.get(name, 0) for d in chosen for name in OUTCOMES)
    covered = max(now - first * SLOT_S, 1e-9)
    return histograms, Traffic(finished / covered, dict(merge(d.batch_sizes for d in chosen)))
