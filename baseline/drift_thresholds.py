"""Drift statuses and the thresholds that decide them: the vocabulary every part of the judgement shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

OK = "ok"
WARN = "warn"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"
#: Every status, least severe first (insufficient_data ranks below ok: it says nothing).
STATUSES = (INSUFFICIENT_DATA, OK, WARN, DRIFT)
SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}
#: Threshold fields newer than the first stored results (those take their defaults).
_ADDED_LATER = frozenset({"load_tolerance"})


@dataclass(frozen=True)
class DriftThresholds:
    """When a stage is judged at all, what counts as significant and large, and how fast the signal moves."""

    #: Live and baseline samples per stage below which that stage is insufficient_data.
    min_samples: int = 200
    #: Significance level of the binned two-sample KS test.
    ks_alpha: float = 0.001
    #: Effect (larger of the p50 and p95 ratios) at or above which, with KS rejecting, a stage is warn.
    warn_ratio: float = 1.10
    #: Effect at or above which, with KS rejecting, a stage is drift.
    drift_ratio: float = 1.20
    #: Consecutive raw drift evaluations before the signal says drift.
    enter_after: int = 2
    #: Consecutive raw ok evaluations before a drifted signal says ok again.
    exit_after: int = 2
    #: The stages judged (names as in ``batchgate.metrics_store.STAGES``).
    stages: tuple[str, ...] = ("end_to_end", "model", "queued", "batch_wait")
    #: Live request rate or mean batch size beyond this factor of the baseline's: another load (a note).
    load_tolerance: float = 2.0

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        if not 0 < self.ks_alpha < 1:
            raise ValueError("ks_alpha must lie strictly between 0 and 1")
        if not 1 <= self.warn_ratio <= self.drift_ratio:
            raise ValueError("need 1 <= warn_ratio <= drift_ratio (faster is never drift)")
        if self.enter_after < 1 or self.exit_after < 1:
            raise ValueError("enter_after and exit_after must be at least 1")
        if not self.stages:
            raise ValueError("at least one stage must be judged")
        if self.load_tolerance < 1:
            raise ValueError("load_tolerance is a factor, at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "stages": list(self.stages)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftThresholds:
        """Inverse of ``to_dict`` (fields added since a result was stored take their defaults)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data or f.name not in _ADDED_LATER}
        values["stages"] = tuple(values["stages"])
        return cls(**values)


def check_status(status: str) -> None:
    """Refuse a status outside ``STATUSES`` (stored results are read back from JSON)."""
    if status not in SEVERITY:
        raise ValueError(f"unknown drift status {status!r}; expected one of {STATUSES}")
