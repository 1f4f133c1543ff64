"""Latency drift: does live latency, stage by stage, differ from a baseline enough to act on?

Each stage (``DriftThresholds.stages``) is judged on two histograms of
``batchgate.histogram`` buckets, the baseline's and the live window's:

* ``insufficient_data`` when either holds fewer than ``min_samples`` values; every
  statistic is then None (none is trustworthy on so few values).
* Otherwise a two-sample Kolmogorov-Smirnov test runs on the shared bucket edges: ``D`` is
  the largest gap between the two empirical CDFs at any bucket's upper edge, and it rejects
  "same distribution" when ``D > c(alpha) * sqrt((n + m) / (n * m))`` with
  ``c(alpha) = sqrt(-ln(alpha / 2) / 2)`` (the asymptotic two-sided critical value). Binning
  only ever shrinks ``D`` (the gap is looked at on fewer points), so the binned test is
  conservative: its false-alarm rate stays at or below ``alpha`` for independent samples.
* KS alone flags trivial shifts once samples number thousands, so an effect-size guard on
  the p95 ratio (live / baseline, nearest-rank over buckets, each within 1 % of the truth)
  decides the level: ``drift`` when KS rejects and ``p95_ratio >= drift_ratio``, ``warn``
  when KS rejects and ``p95_ratio >= warn_ratio``, else ``ok``. Both ratios are at least 1,
  so faster than baseline is never drift. Values below ``MIN_MS`` (bucket 0) count as
  ``MIN_MS`` in ratios, the finest the buckets tell apart, so a 0 ms baseline cannot divide
  by zero. ``p99_ratio`` is reported, not judged.

An evaluation's ``raw_status`` is its worst stage (ok < warn < drift); it is
``insufficient_data`` only when every stage is. ``consecutive`` counts the evaluations in a
row, this one included, with this ``raw_status`` (any other raw status breaks the run). The
reported ``status`` then follows, given the previous result's ``status``:

* raw drift: drift if the previous status was drift or ``consecutive >= enter_after``,
  else warn (a first sighting is a warning, not yet an alarm);
* raw warn: drift if the previous status was drift, else warn (warn passes straight through);
* raw ok: drift if the previous status was drift and ``consecutive < exit_after``, else ok;
* raw insufficient_data: drift if the previous status was drift (no leaving drift for lack
  of data), else insufficient_data.

``drifted_stages`` names the stages whose raw status is drift, and, when ``status`` is warn
or drift, also those whose raw status is warn (so a drift held by hysteresis still names the
stages that are off). It is empty when no stage is off now.

Measured (``tests/test_drift.py``: lognormal latencies, median 600 ms, sigma 0.25; baseline
5,000 samples, live 1,000, each trial with fresh seeds for both, default thresholds):
same distribution, 0 of 100 trials warn or drift (the test allows at most 2; KS at
``alpha = 0.001`` alone would expect 0.1); every latency x1.3 (p95 +30 %), 100 of 100
trials drift (the test requires at least 95); over 1,000 trials, 0 and 1,000. At
``min_samples`` (200 live samples) the x1.3 shift drifts in 964 of 1,000 trials (warns in
the rest): the p95 ratio is noisier there.

Blind spot: KS watches the body of the distribution, and a slowdown confined to the tail
barely moves the CDF. Measured at the sizes above, 5 % of requests twice as slow (p99 x1.37) is ok in 95 % of
trials, 3 % three times as slow (p99 x1.85) in 99 %; 10 % twice as slow drifts in 97 %.
A shift of exactly ``drift_ratio`` (x1.2) drifts in about a third of trials, warns otherwise.

KS assumes independent samples. Latencies are not quite that (items of one batch share a
model call, a queue backlog delays neighbours alike), which makes the test reject more
often than ``alpha`` says; the p95 guard is what keeps that from becoming an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from batchgate.histogram import MIN_MS, percentile

OK = "ok"
WARN = "warn"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"
#: Every status, least severe first (insufficient_data ranks below ok: it says nothing).
STATUSES = (INSUFFICIENT_DATA, OK, WARN, DRIFT)
_SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}


@dataclass(frozen=True)
class DriftThresholds:
    """When a stage is judged at all, what counts as significant and large, and how fast the signal moves."""

    #: Live and baseline samples per stage below which that stage is insufficient_data.
    min_samples: int = 200
    #: Significance level of the binned two-sample KS test.
    ks_alpha: float = 0.001
    #: Live p95 / baseline p95 at or above which (with KS rejecting) a stage is warn.
    warn_ratio: float = 1.10
    #: Live p95 / baseline p95 at or above which (with KS rejecting) a stage is drift.
    drift_ratio: float = 1.20
    #: Consecutive raw drift evaluations before the signal says drift.
    enter_after: int = 2
    #: Consecutive raw ok evaluations before a drifted signal says ok again.
    exit_after: int = 2
    #: The stages judged (names as in ``batchgate.metrics_store.STAGES``).
    stages: tuple[str, ...] = ("end_to_end", "model", "queued", "batch_wait")

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "stages": list(self.stages)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftThresholds:
        """Inverse of ``to_dict``."""
        values = {f.name: data[f.name] for f in fields(cls)}
        values["stages"] = tuple(values["stages"])
        return cls(**values)


@dataclass(frozen=True)
class StageDrift:
    """One stage's verdict and the numbers behind it (statistics are None when insufficient_data)."""

    stage: str
    status: str
    live_samples: int
    baseline_samples: int
    #: Binned KS D over the shared bucket edges.
    ks_statistic: float | None
    #: ``c(alpha) * sqrt((n + m) / (n * m))``; KS rejects when ``ks_statistic`` exceeds it.
    ks_critical: float | None
    p95_live_ms: float | None
    p95_baseline_ms: float | None
    p95_ratio: float | None
    p99_ratio: float | None

    def __post_init__(self) -> None:
        _check_status(self.status)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageDrift:
        """Inverse of ``to_dict``."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class DriftResult:
    """One evaluation; passed back in as ``previous``, it is all the state hysteresis needs."""

    #: Overall status after hysteresis.
    status: str
    #: Overall status of this evaluation alone.
    raw_status: str
    #: Stages whose raw status is drift (and warn, when ``status`` is warn).
    drifted_stages: tuple[str, ...]
    stages: tuple[StageDrift, ...]
    #: Wall-clock seconds: results are shared between processes, so monotonic time won't do.
    evaluated_at: float
    #: Evaluations in a row, this one included, with this ``raw_status``.
    consecutive: int
    thresholds: DriftThresholds

    def __post_init__(self) -> None:
        _check_status(self.status)
        _check_status(self.raw_status)
        if self.consecutive < 1:
            raise ValueError("consecutive counts this evaluation, so it is at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": self.status,
            "raw_status": self.raw_status,
            "drifted_stages": list(self.drifted_stages),
            "stages": [stage.to_dict() for stage in self.stages],
            "evaluated_at": self.evaluated_at,
            "consecutive": self.consecutive,
            "thresholds": self.thresholds.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """Inverse of ``to_dict``; any malformed input raises ValueError, so callers catch one thing."""
        try:
            return cls(
                status=data["status"],
                raw_status=data["raw_status"],
                drifted_stages=tuple(data["drifted_stages"]),
                stages=tuple(StageDrift.from_dict(stage) for stage in data["stages"]),
                evaluated_at=float(data["evaluated_at"]),
                consecutive=int(data["consecutive"]),
                thresholds=DriftThresholds.from_dict(data["thresholds"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a DriftResult: {exc!r}") from exc


def binned_ks_statistic(a: Mapping[int, int], b: Mapping[int, int]) -> float:
    """The largest gap between the two empirical CDFs at any bucket's upper edge (KS D)."""
    n_a, n_b = _total(a), _total(b)
    if n_a == 0 or n_b == 0:
        raise ValueError("KS needs at least one value on each side")
    seen_a = seen_b = widest = 0
    for index in sorted(set(a) | set(b)):
        seen_a += a.get(index, 0)
        seen_b += b.get(index, 0)
        # |seen_a/n_a - seen_b/n_b| scaled by n_a*n_b: exact integers, divided once at the end.
        widest = max(widest, abs(seen_a * n_b - seen_b * n_a))
    return widest / (n_a * n_b)


def ks_critical(n: int, m: int, alpha: float) -> float:
    """The asymptotic two-sided two-sample KS critical value for sample sizes ``n`` and ``m``."""
    c_alpha = math.sqrt(-math.log(alpha / 2) / 2)
    return c_alpha * math.sqrt((n + m) / (n * m))


def compare_stage(
    stage: str, baseline: Mapping[int, int], live: Mapping[int, int], t: DriftThresholds
) -> StageDrift:
    """Judge one stage's live histogram against its baseline (rules in the module docstring)."""
    n, m = _total(live), _total(baseline)
    if n < t.min_samples or m < t.min_samples:
        return StageDrift(stage, INSUFFICIENT_DATA, n, m, None, None, None, None, None, None)
    d = binned_ks_statistic(baseline, live)
    critical = ks_critical(n, m, t.ks_alpha)
    p95_live, p95_baseline = _quantile(live, 0.95), _quantile(baseline, 0.95)
    p95_ratio = _ratio(p95_live, p95_baseline)
    p99_ratio = _ratio(_quantile(live, 0.99), _quantile(baseline, 0.99))
    status = OK
    if d > critical:
        if p95_ratio >= t.drift_ratio:
            status = DRIFT
        elif p95_ratio >= t.warn_ratio:
            status = WARN
    return StageDrift(stage, status, n, m, d, critical, p95_live, p95_baseline, p95_ratio, p99_ratio)


def settle(raw_status: str, previous: DriftResult | None, t: DriftThresholds) -> tuple[str, int]:
    """The status after hysteresis, and ``consecutive``, for this raw status (table in the module docstring)."""
    _check_status(raw_status)
    same_run = previous is not None and previous.raw_status == raw_status
    consecutive = previous.consecutive + 1 if previous is not None and same_run else 1
    in_drift = previous is not None and previous.status == DRIFT
    if raw_status == DRIFT:
        return (DRIFT if in_drift or consecutive >= t.enter_after else WARN), consecutive
    if raw_status == OK:
        return (DRIFT if in_drift and consecutive < t.exit_after else OK), consecutive
    # warn and insufficient_data never end a drift, nor start one.
    return (DRIFT if in_drift else raw_status), consecutive


class LatencyDriftSignal:
    """Stateful only through the previous DriftResult passed in (so any process can evaluate next)."""

    def __init__(self, thresholds: DriftThresholds = DriftThresholds()) -> None:
        self.thresholds = thresholds

    def evaluate(
        self,
        baseline: Mapping[str, Mapping[int, int]],
        live: Mapping[str, Mapping[int, int]],
        now: float,
        previous: DriftResult | None = None,
    ) -> DriftResult:
        """Judge every stage, then apply hysteresis over ``previous`` (a stage missing on either side has no data)."""
        t = self.thresholds
        stages = tuple(compare_stage(s, baseline.get(s, {}), live.get(s, {}), t) for s in t.stages)
        raw_status = max((s.status for s in stages), key=_SEVERITY.__getitem__)
        status, consecutive = settle(raw_status, previous, t)
        named = {DRIFT, WARN} if status in (WARN, DRIFT) else {DRIFT}
        drifted = tuple(s.stage for s in stages if s.status in named)
        return DriftResult(status, raw_status, drifted, stages, now, consecutive, t)


def _check_status(status: str) -> None:
    if status not in _SEVERITY:
        raise ValueError(f"unknown drift status {status!r}; expected one of {STATUSES}")


def _total(counts: Mapping[int, int]) -> int:
    for index, count in counts.items():
        # JSON object keys are strings, and strings sort "10" < "9": a silently wrong CDF.
        if not isinstance(index, int) or count < 0:
            raise ValueError(f"histogram entries are int bucket -> count >= 0, not {index!r}: {count!r}")
    return sum(counts.values())


def _quantile(counts: Mapping[int, int], q: float) -> float:
    value = percentile(counts, q)
    if value is None:  # callers check the sample count first
        raise ValueError("empty histogram has no percentile")
    return value


def _ratio(live_ms: float, baseline_ms: float) -> float:
    # Below MIN_MS the buckets tell nothing apart, so a 0 ms p95 counts as MIN_MS.
    return max(live_ms, MIN_MS) / max(baseline_ms, MIN_MS)
