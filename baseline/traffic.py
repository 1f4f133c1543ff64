"""The load behind a side's latencies (request rate, batching), and the live load set beside the baseline's.

Latency depends on load (at make run defaults, waves of 60 concurrent tasks make batches of
30 where make baseline's 8 clients make batches of 8; the call takes x2.2 as long and the
queue x6-14), so a baseline only speaks for a load like its own: ``LoadComparison`` sets the
live window's request rate and mean batch size beside the baseline's and the reason says
when they differ by more than ``load_tolerance``. The verdict stands either way: the latency
is what it is; the note says it may be the load rather than the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Traffic:
    """What produced one side's latencies: its request rate and how its requests were batched."""

    #: Requests finished per second (every outcome).
    requests_per_s: float
    #: Batch size -> requests that were in a batch of that size (the metrics' ``batch_sizes``).
    batch_sizes: Mapping[int, int] = field(default_factory=dict)

    @property
    def batched_requests(self) -> int:
        return sum(n for size, n in self.batch_sizes.items() if size > 0)

    @property
    def batches(self) -> float:
        """How many batches those requests made (fractional where a batch straddles a slot)."""
        return sum(n / size for size, n in self.batch_sizes.items() if size > 0)

    @property
    def mean_batch(self) -> float | None:
        batches = self.batches
        return self.batched_requests / batches if batches else None

    def units(self, values: int) -> float:
        """Independent observations among ``values`` latencies of a stage: a batch counts once.

        Values beyond the batched requests (cache hits have an end-to-end time and no batch)
        count one each; the rest count one per mean batch size. No batch sizes: every value.
        """
        mean = self.mean_batch
        if mean is None or values <= 0:
            return float(max(values, 0))
        unbatched = max(0, values - self.batched_requests)
        return max(1.0, unbatched + (values - unbatched) / mean)


@dataclass(frozen=True)
class LoadComparison:
    """The live window's load beside the baseline's: latency is only comparable at a like load."""

    baseline_rps: float
    live_rps: float
    baseline_mean_batch: float | None
    live_mean_batch: float | None
    tolerance: float

    @property
    def rps_ratio(self) -> float | None:
        return self.live_rps / self.baseline_rps if self.baseline_rps > 0 else None

    @property
    def batch_ratio(self) -> float | None:
        if self.live_mean_batch is None or not self.baseline_mean_batch:
            return None
        return self.live_mean_batch / self.baseline_mean_batch

    @property
    def comparable(self) -> bool:
        """Both the request rate and the mean batch size (where known) within ``tolerance``."""
        return all(
            _within(ratio, self.tolerance)
            for ratio in (self.rps_ratio, self.batch_ratio)
            if ratio is not None
        )

    def note(self) -> str:
        """One sentence on how the loads differ ("" when they are alike)."""
        if self.comparable:
            return ""
        parts = [f"{self.live_rps:.1f} vs {self.baseline_rps:.1f} req/s"]
        if self.live_mean_batch is not None and self.baseline_mean_batch is not None:
            parts.append(f"mean batch {self.live_mean_batch:.1f} vs {self.baseline_mean_batch:.1f}")
        return (
            f"The live load is not the baseline's ({', '.join(parts)}; beyond x{self.tolerance:g}): "
            "latency depends on load, so part of any difference may be the load; "
            "capture a baseline at this load (make baseline --clients N, or --from-live)."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the ratios and the verdict."""
        return {
            **asdict(self),
            "rps_ratio": rounded(self.rps_ratio),
            "batch_ratio": rounded(self.batch_ratio),
            "comparable": self.comparable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadComparison:
        """Inverse of ``to_dict``."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def compare_load(baseline: Traffic, live: Traffic, tolerance: float) -> LoadComparison:
    """Set the two loads side by side."""
    return LoadComparison(
        baseline.requests_per_s,
        live.requests_per_s,
        rounded(baseline.mean_batch),
        rounded(live.mean_batch),
        tolerance,
    )


def rounded(value: float | None) -> float | None:
    """Three decimals for the numbers a stored result reports (None stays None)."""
    return None if value is None else round(value, 3)


def _within(ratio: float, tolerance: float) -> bool:
    return 1 / tolerance <= ratio <= tolerance
