"""The benchmark's arithmetic: percentiles, the simulator's theoretical limit, overheads.

Pure functions of measured numbers, so every formula the report relies on is unit-tested.

**Theoretical limit.** A call of *n* items with *p* prompt and *o* output tokens holds one
of ``max_concurrent`` slots for ``latency = overhead_ms + p * per_input_token_ms +
o * per_output_token_ms``. With every slot busy all the time, the simulator answers
``max_concurrent * n / latency`` items per second; an RPM quota caps that at
``rpm * n / 60``. *n*, *p* and *o* are the means over the calls actually made (from
``/_sim/stats``: ``items / calls``, ``prompt_tokens / calls``, ``output_tokens / calls``);
as latency is linear in tokens, that is exactly ``slots * Σ items / Σ latency`` over those calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CostModel:
    """The simulator's cost fields, as ``GET /_sim/config`` reports them."""

    overhead_ms: float
    per_input_token_ms: float
    per_output_token_ms: float
    max_concurrent: int
    rpm: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CostModel:
        """Take the cost fields out of a ``/_sim/config`` body."""
        return cls(
            overhead_ms=float(config["overhead_ms"]),
            per_input_token_ms=float(config["per_input_token_ms"]),
            per_output_token_ms=float(config["per_output_token_ms"]),
            max_concurrent=int(config["max_concurrent"]),
            rpm=int(config.get("rpm", 0)),
        )

    def call_latency_ms(self, prompt_tokens: float, output_tokens: float) -> float:
        """How long one call holds a slot."""
        return (
            self.overhead_ms
            + prompt_tokens * self.per_input_token_ms
            + output_tokens * self.per_output_token_ms
        )


def theoretical_limit(
    cost: CostModel, items_per_call: float, prompt_tokens_per_call: float, output_tokens_per_call: float
) -> float:
    """Items per second the simulator can answer at most, for calls of this size (see module doc)."""
    if items_per_call <= 0:
        return 0.0
    latency_s = cost.call_latency_ms(prompt_tokens_per_call, output_tokens_per_call) / 1000
    limit = (
        math.inf
        if cost.max_concurrent <= 0 or latency_s <= 0
        else cost.max_concurrent * items_per_call / latency_s
    )
    if cost.rpm > 0:
        limit = min(limit, cost.rpm * items_per_call / 60)
    return limit


@dataclass(frozen=True)
class CallMix:
    """What the simulator answered in an interval: ``/_sim/stats`` counters, end minus start."""

    calls: int
    items: int
    prompt_tokens: int
    output_tokens: int
    errors: int = 0
    #: Slot time spent inside the interval (calls still running count their part so far).
    busy_ms: float = 0.0
    #: Items answered inside the interval, each call's spread evenly over its time in the slot
    #: (``items`` counts whole calls that ended inside it, so a few long calls ending just
    #: inside or just outside swing it); None when the simulator did not report it.
    work_items: float | None = None

    @classmethod
    def between(cls, before: Mapping[str, Any], after: Mapping[str, Any]) -> CallMix:
        """The difference of two ``/_sim/stats`` bodies (work in progress counted pro rata)."""

        def delta(*names: str) -> Any:
            return sum(after.get(name, 0) - before.get(name, 0) for name in names)

        pro_rata = "items_in_progress" in before and "items_in_progress" in after
        return cls(
            calls=delta("calls"),
            items=delta("items"),
            prompt_tokens=delta("prompt_tokens"),
            output_tokens=delta("output_tokens"),
            errors=delta("errors"),
            busy_ms=delta("busy_ms_total", "busy_ms_in_progress"),
            work_items=delta("items", "items_in_progress") if pro_rata else None,
        )

    @property
    def items_per_call(self) -> float:
        return self.items / self.calls if self.calls else 0.0

    def limit(self, cost: CostModel) -> float:
        """The theoretical limit for calls of this mix's mean size and tokens."""
        if not self.calls:
            return 0.0
        return theoretical_limit(
            cost, self.items_per_call, self.prompt_tokens / self.calls, self.output_tokens / self.calls
        )

    def limit_at(self, cost: CostModel, items_per_call: float) -> float:
        """The limit had every call held ``items_per_call`` items of this mix's mean tokens per item.

        The fixed part of a packed prompt (its instructions) is counted per item here, so this
        slightly understates the gain of fuller calls; it is a reference, not the headline.
        """
        if not self.items:
            return 0.0
        per_item_in, per_item_out = self.prompt_tokens / self.items, self.output_tokens / self.items
        return theoretical_limit(
            cost, items_per_call, per_item_in * items_per_call, per_item_out * items_per_call
        )

    def slot_utilisation(self, cost: CostModel, seconds: float) -> float:
        """Share of the slots' time spent answering calls in the interval (0..1)."""
        if cost.max_concurrent <= 0 or seconds <= 0:
            return 0.0
        return self.busy_ms / 1000 / (cost.max_concurrent * seconds)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    return percentile(list(values), 50)


def overheads_ms(end_to_end_ms: Sequence[float], model_ms: Sequence[float | None]) -> list[float]:
    """Per request, client-side end-to-end time minus the time spent in the model call.

    Requests whose task body carries no model time (failed before any call) are left out.
    """
    return [e2e - model for e2e, model in zip(end_to_end_ms, model_ms, strict=True) if model is not None]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99/mean/max of a list of milliseconds, rounded for the report."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 2),
        "p90": round(percentile(values, 90), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "mean": round(sum(values) / len(values), 2),
        "max": round(max(values), 2),
    }


def throughput(finish_times: Iterable[float], start: float, end: float) -> float:
    """Completions per second whose finish time falls in ``[start, end)``."""
    if end <= start:
        return 0.0
    return sum(1 for t in finish_times if start <= t < end) / (end - start)
