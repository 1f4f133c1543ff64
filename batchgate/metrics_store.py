"""InferenceMetricsCollector: every finished request recorded as data, in Redis.

Records are aggregated into 10-second slots: per slot and stage a histogram hash
(bucket index → count, see ``baseline.histogram``), a counters hash (outcomes, tokens,
rejections), and distributions of batch size and items per call. Slots expire after the
longest window (15 min) plus a margin, so memory is bounded by the number of distinct
buckets in 96 slots; the same data also accumulates into never-expiring totals that
``/metrics`` exposes to Prometheus. Any process may write (workers, API replicas): counts
from many writers add up exactly.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from baseline.histogram import bucket_of
from baseline.slots import STAGES, SlotData, slot_of
from batchgate import keys as key_names

#: Slots are kept for the longest window (15 min) plus a minute.
SLOT_TTL_S = 16 * 60
OUTCOMES = ("succeeded", "failed", "cached")
TOTAL = "total"


@dataclass(frozen=True)
class RequestRecord:
    """One finished request as the metrics see it (no prompt, no key)."""

    outcome: str
    finished_at: float
    end_to_end_ms: float | None = None
    queued_ms: float | None = None
    batch_wait_ms: float | None = None
    model_ms: float | None = None
    batch_size: int | None = None
    items_in_call: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    def stage_ms(self, stage: str) -> float | None:
        return getattr(self, f"{stage}_ms")  # type: ignore[no-any-return]


class InferenceMetricsCollector:
    """Writes request records and reads slots back."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def key(self, slot: int | str, kind: str) -> str:
        """``kind``: ``h:<stage>``, ``c`` (counters), ``bs`` (batch sizes), ``ipc``, ``q`` (depth)."""
        return key_names.metrics_slot(self._prefix, slot, kind)

    def counters_key(self, slot: int | str) -> str:
        return self.key(slot, "c")

    def record(self, records: list[RequestRecord]) -> None:
        """Add records to their slots and to the totals, in one round trip."""
        if not records:
            return
        increments: dict[tuple[int | str, str], Counter[str]] = {}

        def add(slot: int | str, kind: str, name: str | int, amount: int = 1) -> None:
            increments.setdefault((slot, kind), Counter())[str(name)] += amount

        for record in records:
            for slot in (slot_of(record.finished_at), TOTAL):
                add(slot, "c", record.outcome)
                add(slot, "c", "input_tokens", record.input_tokens)
                add(slot, "c", "output_tokens", record.output_tokens)
                for stage in STAGES:
                    value = record.stage_ms(stage)
                    if value is not None:
                        add(slot, f"h:{stage}", bucket_of(value))
                if record.batch_size:
                    add(slot, "bs", record.batch_size)
                if record.items_in_call:
                    add(slot, "ipc", record.items_in_call)

        pipe = self._redis.pipeline(transaction=False)
        for (slot, kind), counter in increments.items():
            key = self.key(slot, kind)
            for name, amount in counter.items():
                if amount:
                    pipe.hincrby(key, name, amount)
            if slot != TOTAL:
                pipe.expire(key, SLOT_TTL_S)
        pipe.execute()

    def record_queue_depth(self, depth: int, now: float | None = None) -> None:
        """Remember the largest depth sampled in the current slot (for the depth series)."""
        key = self.key(slot_of(time.time() if now is None else now), "q")
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(key, {"depth": depth}, gt=True)
        pipe.expire(key, SLOT_TTL_S)
        pipe.execute()

    def read(self, slots: list[int | str]) -> dict[int | str, SlotData]:
        """Read whole slots (or ``TOTAL``) in one round trip."""
        kinds = [f"h:{s}" for s in STAGES] + ["c", "bs", "ipc"]
        pipe = self._redis.pipeline(transaction=False)
        for slot in slots:
            for kind in kinds:
                pipe.hgetall(self.key(slot, kind))
            pipe.zscore(self.key(slot, "q"), "depth")
        replies = pipe.execute()
        found: dict[int | str, SlotData] = {}
        per_slot = len(kinds) + 1
        for n, slot in enumerate(slots):
            chunk = replies[n * per_slot : (n + 1) * per_slot]
            data = SlotData()
            for stage, raw in zip(STAGES, chunk[: len(STAGES)], strict=True):
                data.histograms[stage] = _int_counter(raw)
            data.counters = Counter({_text(k): int(v) for k, v in (chunk[len(STAGES)] or {}).items()})
            data.batch_sizes = _int_counter(chunk[len(STAGES) + 1])
            data.items_per_call = _int_counter(chunk[len(STAGES) + 2])
            depth = chunk[-1]
            data.queue_depth = int(float(depth)) if depth is not None else None
            found[slot] = data
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int_counter(raw: Any) -> Counter[int]:
    return Counter({int(_text(k)): int(v) for k, v in (raw or {}).items()})
