"""Where the stack stops keeping up: the queue-depth inflection point of a stepped load test.

Pure functions over the per-step table (no I/O, no Locust), so they are tested on synthetic
curves.

**Inflection point.** The first step *i* (in the order run, offered load rising) at which

1. *the queue grows across the step*: ``queue_depth_last - queue_depth_first >
   growth_threshold`` **and** ``queue_depth_mean > depth_floor`` (the depth the metrics
   snapshot reports, sampled from the API during the step's measured part); **or**
2. *latency departs from its low-load value*: ``p95_i > knee_factor x baseline`` **and**
   ``p95_i - baseline > min_knee_delta_ms``, where ``baseline`` is the median p95
   (end-to-end, as the client sees it) of the first ``baseline_steps`` steps; a step after the
   baseline in which users were active but no task finished counts as departed too.

Defaults: ``growth_threshold`` 10 requests, ``depth_floor`` 5, ``knee_factor`` 1.5,
``min_knee_delta_ms`` 25 ms, ``baseline_steps`` 2. The absolute margin keeps millisecond
jitter at low latency from being read as a knee. ``reason`` says which conditions held.

**Saturation throughput.** The highest step throughput (finished tasks per second). The
plateau starts at the first step within ``plateau_tolerance`` (10 %) of it; the stack counts
as saturated when a later step exists, i.e. more offered load did not buy more throughput.
If the plateau starts only at the last step, the maximum is a lower bound.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DepthSample:
    """One reading of the metrics snapshot: when we read it, its depth, when it was made."""

    at: float
    depth: int
    generated_at: float | None = None


def depth_summary(samples: Sequence[DepthSample]) -> dict[str, Any]:
    """First, last, mean and max queue depth of a step, each published snapshot counted once.

    The snapshot is published every 2 s and read more often; a reading of a snapshot already
    seen (same ``generated_at``) would only weight it twice.
    """
    seen: set[float] = set()
    unique = []
    for sample in samples:
        if sample.generated_at is not None:
            if sample.generated_at in seen:
                continue
            seen.add(sample.generated_at)
        unique.append(sample)
    depths = [s.depth for s in unique]
    return {
        "queue_depth_samples": len(depths),
        "queue_depth_first": depths[0] if depths else None,
        "queue_depth_last": depths[-1] if depths else None,
        "queue_depth_mean": round(statistics.fmean(depths), 2) if depths else None,
        "queue_depth_max": max(depths) if depths else None,
    }


@dataclass(frozen=True)
class StepPoint:
    """The part of one step's row that the analysis reads."""

    index: int
    users: int
    throughput_rps: float
    p95_ms: float | None
    queue_depth_first: float | None = None
    queue_depth_last: float | None = None
    queue_depth_mean: float | None = None
    queue_depth_max: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StepPoint:
        """Read a row of the shape's step table (extra fields are ignored)."""

        def number(name: str) -> float | None:
            value = row.get(name)
            return None if value is None else float(value)

        return cls(
            index=int(row["index"]),
            users=int(row["users"]),
            throughput_rps=float(row.get("throughput_rps") or 0.0),
            p95_ms=number("p95_ms"),
            queue_depth_first=number("queue_depth_first"),
            queue_depth_last=number("queue_depth_last"),
            queue_depth_mean=number("queue_depth_mean"),
            queue_depth_max=number("queue_depth_max"),
        )


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the inflection definition (see the module docstring)."""

    growth_threshold: float = 10.0
    depth_floor: float = 5.0
    knee_factor: float = 1.5
    min_knee_delta_ms: float = 25.0
    baseline_steps: int = 2
    plateau_tolerance: float = 0.10


@dataclass(frozen=True)
class Inflection:
    """The first step where the stack stopped keeping up, and why."""

    step_index: int
    users: int
    throughput_rps: float
    p95_ms: float | None
    baseline_p95_ms: float | None
    queue_depth_mean: float | None
    queue_growth: float | None
    #: ``queue_growth``, ``latency_knee``, ``no_completions`` or several joined by ``+``.
    reason: str


@dataclass(frozen=True)
class Saturation:
    """The most throughput any step reached, and whether more load stopped buying more."""

    throughput_rps: float
    step_index: int
    users: int
    plateau_from_step: int
    saturated: bool


@dataclass(frozen=True)
class Analysis:
    """Everything the report states about the curve."""

    inflection: Inflection | None
    saturation: Saturation | None
    baseline_p95_ms: float | None
    criteria: Criteria

    def to_dict(self) -> dict[str, Any]:
        return {
            "inflection": None if self.inflection is None else asdict(self.inflection),
            "saturation": None if self.saturation is None else asdict(self.saturation),
            "baseline_p95_ms": self.baseline_p95_ms,
            "criteria": asdict(self.criteria),
        }


def baseline_p95(points: Sequence[StepPoint], steps: int) -> float | None:
    """Median p95 of the first ``steps`` steps that finished any task (the low-load value)."""
    values = [p.p95_ms for p in points[:steps] if p.p95_ms is not None]
    return statistics.median(values) if values else None


def queue_growth(point: StepPoint) -> float | None:
    """How much the sampled queue depth rose across the step (last - first), if sampled."""
    if point.queue_depth_first is None or point.queue_depth_last is None:
        return None
    return point.queue_depth_last - point.queue_depth_first


def queue_grows(point: StepPoint, criteria: Criteria) -> bool:
    """Condition 1: the queue grows across the step and is not near empty on average."""
    growth = queue_growth(point)
    mean = point.queue_depth_mean
    return (
        growth is not None
        and mean is not None
        and growth > criteria.growth_threshold
        and mean > criteria.depth_floor
    )


def latency_departs(point: StepPoint, baseline: float | None, criteria: Criteria) -> bool:
    """Condition 2: p95 is both ``knee_factor`` times and ``min_knee_delta_ms`` above the baseline."""
    if baseline is None or point.p95_ms is None:
        return False
    return (
        point.p95_ms > criteria.knee_factor * baseline
        and point.p95_ms - baseline > criteria.min_knee_delta_ms
    )


def find_inflection(points: Sequence[StepPoint], criteria: Criteria | None = None) -> Inflection | None:
    """The first step meeting either condition, or None if the stack kept up at every step."""
    criteria = criteria or Criteria()
    baseline = baseline_p95(points, criteria.baseline_steps)
    for position, point in enumerate(points):
        reasons = []
        if queue_grows(point, criteria):
            reasons.append("queue_growth")
        if latency_departs(point, baseline, criteria):
            reasons.append("latency_knee")
        elif (
            point.p95_ms is None
            and baseline is not None
            and position >= criteria.baseline_steps
            and point.users > 0
        ):
            reasons.append("no_completions")
        if reasons:
            return Inflection(
                step_index=point.index,
                users=point.users,
                throughput_rps=point.throughput_rps,
                p95_ms=point.p95_ms,
                baseline_p95_ms=baseline,
                queue_depth_mean=point.queue_depth_mean,
                queue_growth=queue_growth(point),
                reason="+".join(reasons),
            )
    return None


def find_saturation(points: Sequence[StepPoint], tolerance: float = 0.10) -> Saturation | None:
    """The highest step throughput and where its plateau (within ``tolerance`` of it) starts."""
    if not points:
        return None
    best = max(points, key=lambda p: p.throughput_rps)
    floor = (1.0 - tolerance) * best.throughput_rps
    plateau = next(p for p in points if p.throughput_rps >= floor)
    return Saturation(
        throughput_rps=best.throughput_rps,
        step_index=best.index,
        users=best.users,
        plateau_from_step=plateau.index,
        saturated=plateau is not points[-1] and best.throughput_rps > 0,
    )


def analyse(rows: Sequence[Mapping[str, Any] | StepPoint], criteria: Criteria | None = None) -> Analysis:
    """Inflection point, saturation throughput and the baseline of a step table."""
    criteria = criteria or Criteria()
    points = [row if isinstance(row, StepPoint) else StepPoint.from_row(row) for row in rows]
    return Analysis(
        inflection=find_inflection(points, criteria),
        saturation=find_saturation(points, criteria.plateau_tolerance),
        baseline_p95_ms=baseline_p95(points, criteria.baseline_steps),
        criteria=criteria,
    )
