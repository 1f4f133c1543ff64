"""Latency drift: does live latency, stage by stage, differ from a baseline enough to act on?

Each stage (``DriftThresholds.stages``) is judged on two histograms of
``baseline.histogram`` buckets, the baseline's and the live window's:

* ``insufficient_data`` when either holds fewer than ``min_samples`` values; every
  statistic is then None (none is trustworthy on so few values).
* Otherwise a two-sample Kolmogorov-Smirnov test runs on the shared bucket edges: ``D`` is
  the largest gap between the two empirical CDFs at any bucket's upper edge, and it rejects
  "same distribution" when ``D > c(alpha) * sqrt((n + m) / (n * m))`` with
  ``c(alpha) = sqrt(-ln(alpha / 2) / 2)`` (the asymptotic two-sided critical value). Binning
  only ever shrinks ``D`` (the gap is looked at on fewer points), so the binned test is
  conservative: its false-alarm rate stays at or below ``alpha`` for independent samples.
* ``n`` and ``m`` count *independent observations*, not requests, when the side's
  ``Traffic`` is known: the requests of one batch share its wait and, packed, one model
  call, so a batch counts once (requests outside any batch, such as cache hits, count one
  each). Counting requests instead made the test reject at healthy load whenever batches
  were large (measured, make run defaults and waves of 60 against a baseline of that same
  load: model D 0.18-0.39 against a critical value of 0.05 from 3,800 requests; with the
  ~160 batches behind them the critical value is 0.23).
* KS alone flags trivial shifts once samples number thousands, so an effect-size guard
  decides the level: the *effect* is the larger of the p50 ratio and the p95 ratio (live /
  baseline, nearest-rank over buckets, each within 1 % of the truth). ``drift`` when KS
  rejects and the effect ``>= drift_ratio``, ``warn`` when KS rejects and it is
  ``>= warn_ratio``, else ``ok``. Both ratios are at least 1, so faster than baseline is
  never drift. The median is there because a small baseline's p95 rests on its slowest
  batch or two: one cold call, shared by the 6 requests of its batch, made the model p95 of
  a 48-request baseline 299 ms against a steady 231 ms, and held a x1.43 slowdown of every
  call at a p95 ratio of 1.10-1.13 (measured, the e2e stack at a 200 ms call); the median
  moved by x1.43. Values below ``MIN_MS`` (bucket 0) count as
  ``MIN_MS`` in ratios, the finest the buckets tell apart, so a 0 ms baseline cannot
  divide by zero. ``p99_ratio`` is reported, not judged.
* The model stage times one call, and a call carrying more requests takes longer (a packed
  call pays for every answer's tokens). When the live batches are bigger on average than
  the baseline's, its effect is divided by that factor (``batch_ratio``): judged per request
  carried. A call's time grows at most in proportion to what it carries (its fixed cost does
  not grow), so this never makes a slower model look faster than it is per request; smaller
  batches are not credited. Measured on make run under waves of 60 concurrent tasks: after
  a slowdown and its restore the waves settled into batches of 28 instead of 19.6 and stayed
  there; every call carried x1.43 the requests and took x1.37 as long (p50) while end to end
  was unchanged, which held the signal in drift for good; per request carried it is x0.96.

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
stages that are off). It is empty when no stage is off now. Every stage carries the test
that decided it (``decided_by``) and a sentence saying why (``reason``); the result says
why it holds its status (``reason``) and, in ``hysteresis``, how many evaluations in a row
are still needed to enter or leave drift.

Latency depends on load (at make run defaults, waves of 60 concurrent tasks make batches of
30 where make baseline's 8 clients make batches of 8; the call takes x2.2 as long and the
queue x6-14), so a baseline only speaks for a load like its own: ``LoadComparison`` sets the
live window's request rate and mean batch size beside the baseline's and the reason says
when they differ by more than ``load_tolerance``. The verdict stands either way: the latency
is what it is; the note says it may be the load rather than the model.

Measured (``tests/baseline/test_drift.py``: lognormal latencies, median 600 ms, sigma 0.25; baseline
5,000 samples, live 1,000, each trial with fresh seeds for both, default thresholds, every
sample independent): same distribution, 0 of 1,000 trials warn or drift (the test allows 2
of 100; KS at ``alpha = 0.001`` alone would expect 1 of 1,000); every latency x1.3 (p95
+30 %), 1,000 of 1,000 trials drift (the test requires 95 of 100). At ``min_samples`` (200
live samples) the x1.3 shift drifts in 1,000 of 1,000 (964 when only the p95 was judged):
the median is steadier than the p95 on few values. A shift of exactly ``drift_ratio`` (x1.2)
drifts in about half of trials (a third when only the p95 was judged), warns otherwise.

Blind spot: KS watches the body of the distribution, and a slowdown confined to the tail
barely moves the CDF. Measured at the sizes above over 1,000 trials, 5 % of requests twice
as slow (p99 x1.37) is ok in 91 % of trials, 3 % three times as slow (p99 x1.85) in 99 %;
10 % twice as slow drifts in 98 % (the same with or without the median).

Batches counted once, measured over 300 trials of latencies shared within batches of 30
(100 baseline batches, 35 live; a batch's latency lognormal as above): the same
distribution made KS reject in 1 trial counting batches and in 299 counting requests (105
of which then warned or drifted); x1.43 drifted in 298. The price is power where batches
are few: with 20 baseline and 30 live batches of 6, x1.43 drifts in 69 % of single
evaluations (every one counting requests, which also alarmed in 24 % of same-distribution
trials); each new slot in the window is another chance.

KS assumes independent samples. Counting batches rather than requests removes the
dependence the batching makes; what remains (a queue backlog delays consecutive batches
alike; the load, hence the batch-size mix, wanders from minute to minute) still makes the
test reject more often than ``alpha`` says at high throughput, and the effect-size guard is
what keeps that from becoming an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from baseline.histogram import MIN_MS, percentile

OK = "ok"
WARN = "warn"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"
#: Every status, least severe first (insufficient_data ranks below ok: it says nothing).
STATUSES = (INSUFFICIENT_DATA, OK, WARN, DRIFT)
_SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}
#: What decided a stage's status (``StageDrift.decided_by``).
BY_MIN_SAMPLES = "min_samples"
BY_KS = "ks"
BY_P50 = "p50_ratio"
BY_P95 = "p95_ratio"
#: Threshold fields newer than the first stored results (those take their defaults).
_ADDED_LATER = frozenset({"load_tolerance"})
#: Stages timing one model call, which takes longer the more requests it carries.
PER_CALL_STAGES = frozenset({"model"})


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
            "rps_ratio": _round(self.rps_ratio),
            "batch_ratio": _round(self.batch_ratio),
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
        _round(baseline.mean_batch),
        _round(live.mean_batch),
        tolerance,
    )


@dataclass(frozen=True)
class StageDrift:
    """One stage's verdict and the numbers behind it (statistics are None when insufficient_data)."""

    stage: str
    status: str
    live_samples: int
    baseline_samples: int
    #: Binned KS D over the shared bucket edges.
    ks_statistic: float | None
    #: ``c(alpha) * sqrt((n + m) / (n * m))`` over independent observations; KS rejects above it.
    ks_critical: float | None
    p95_live_ms: float | None
    p95_baseline_ms: float | None
    p95_ratio: float | None
    p99_ratio: float | None
    p50_live_ms: float | None = None
    p50_baseline_ms: float | None = None
    p50_ratio: float | None = None
    #: Independent observations KS counted on each side (batches; requests when unknown).
    live_units: float | None = None
    baseline_units: float | None = None
    #: The judged effect: the larger ratio, per request carried for the model stage.
    effect: float | None = None
    #: Live mean batch size / the baseline's, when the model stage was judged per request carried.
    batch_ratio: float | None = None
    #: What decided ``status``: min_samples, ks (no significant change), p50_ratio or p95_ratio.
    decided_by: str = BY_MIN_SAMPLES
    #: The decision in one sentence, with its numbers and thresholds.
    reason: str = ""

    def __post_init__(self) -> None:
        _check_status(self.status)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageDrift:
        """Inverse of ``to_dict`` (fields added since a result was stored take their defaults)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data or f.default is MISSING})


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
    #: The live load beside the baseline's (None when either is unknown).
    load: LoadComparison | None = None

    def __post_init__(self) -> None:
        _check_status(self.status)
        _check_status(self.raw_status)
        if self.consecutive < 1:
            raise ValueError("consecutive counts this evaluation, so it is at least 1")

    @property
    def hysteresis(self) -> dict[str, Any]:
        """Where the signal stands between raw verdicts and status, and what would move it."""
        t = self.thresholds
        entering = self.status == WARN and self.raw_status == DRIFT
        held = self.status == DRIFT and self.raw_status != DRIFT
        ok_in_a_row = self.consecutive if self.raw_status == OK else 0
        return {
            "held": held,
            "entering": entering,
            "raw_in_a_row": self.consecutive,
            "drift_needed": t.enter_after - self.consecutive if entering else 0,
            "ok_in_a_row": ok_in_a_row,
            "ok_needed": t.exit_after - ok_in_a_row if held else 0,
            "enter_after": t.enter_after,
            "exit_after": t.exit_after,
        }

    @property
    def reason(self) -> str:
        """Why the signal says what it says, in a sentence or three."""
        t, h = self.thresholds, self.hysteresis
        off = [s for s in self.stages if s.status in (WARN, DRIFT)]
        detail = "; ".join(f"{s.stage}: {s.reason}" for s in off)
        if h["entering"]:
            text = (
                f"warn: drifted in {self.consecutive} evaluation(s) in a row, drift after "
                f"{h['drift_needed']} more (enter_after {t.enter_after}). {detail}"
            )
        elif h["held"]:
            needs = f"{h['ok_needed']} more ok evaluation(s) in a row needed to return to ok (exit_after {t.exit_after})"
            if self.raw_status == OK:
                why = f"every stage is ok again, {h['ok_in_a_row']} evaluation(s) in a row"
            elif self.raw_status == WARN:
                why = f"still off: {detail}; a warn never ends a drift"
            else:
                why = "too little data to judge, and lack of data never ends a drift"
            text = f"drift held by hysteresis: {why}; {needs}."
        elif self.status == DRIFT:
            text = f"drift: {detail}"
        elif self.status == WARN:
            text = f"warn: {detail}"
        elif self.status == OK:
            text = f"ok: no stage differs both significantly and by warn_ratio {t.warn_ratio:g} or more"
        else:
            text = f"insufficient_data: every stage needs {t.min_samples} requests on each side"
        note = self.load.note() if self.load is not None else ""
        return f"{text} {note}".strip()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": self.status,
            "raw_status": self.raw_status,
            "reason": self.reason,
            "hysteresis": self.hysteresis,
            "drifted_stages": list(self.drifted_stages),
            "stages": [stage.to_dict() for stage in self.stages],
            "load": None if self.load is None else self.load.to_dict(),
            "evaluated_at": self.evaluated_at,
            "consecutive": self.consecutive,
            "thresholds": self.thresholds.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """Inverse of ``to_dict``; any malformed input raises ValueError, so callers catch one thing."""
        try:
            load = data.get("load")
            return cls(
                status=data["status"],
                raw_status=data["raw_status"],
                drifted_stages=tuple(data["drifted_stages"]),
                stages=tuple(StageDrift.from_dict(stage) for stage in data["stages"]),
                evaluated_at=float(data["evaluated_at"]),
                consecutive=int(data["consecutive"]),
                thresholds=DriftThresholds.from_dict(data["thresholds"]),
                load=None if load is None else LoadComparison.from_dict(load),
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


def ks_critical(n: float, m: float, alpha: float) -> float:
    """The asymptotic two-sided two-sample KS critical value for (effective) sample sizes ``n`` and ``m``."""
    c_alpha = math.sqrt(-math.log(alpha / 2) / 2)
    return c_alpha * math.sqrt((n + m) / (n * m))


def compare_stage(
    stage: str,
    baseline: Mapping[int, int],
    live: Mapping[int, int],
    t: DriftThresholds,
    baseline_traffic: Traffic | None = None,
    live_traffic: Traffic | None = None,
) -> StageDrift:
    """Judge one stage's live histogram against its baseline (rules in the module docstring)."""
    n, m = _total(live), _total(baseline)
    if n < t.min_samples or m < t.min_samples:
        why = f"{n} live and {m} baseline requests; each side needs {t.min_samples}"
        return StageDrift(stage, INSUFFICIENT_DATA, n, m, *(None,) * 6, reason=why)
    n_units = live_traffic.units(n) if live_traffic is not None else float(n)
    m_units = baseline_traffic.units(m) if baseline_traffic is not None else float(m)
    d = binned_ks_statistic(baseline, live)
    critical = ks_critical(n_units, m_units, t.ks_alpha)
    p50_live, p50_baseline = _quantile(live, 0.50), _quantile(baseline, 0.50)
    p95_live, p95_baseline = _quantile(live, 0.95), _quantile(baseline, 0.95)
    p50_ratio, p95_ratio = _ratio(p50_live, p50_baseline), _ratio(p95_live, p95_baseline)
    p99_ratio = _ratio(_quantile(live, 0.99), _quantile(baseline, 0.99))
    by, effect = (BY_P95, p95_ratio) if p95_ratio >= p50_ratio else (BY_P50, p50_ratio)
    counted = "batches" if live_traffic is not None or baseline_traffic is not None else "values"
    ks = f"KS D {d:.3f} {'>' if d > critical else '<='} {critical:.3f} ({n_units:.0f} vs {m_units:.0f} {counted})"
    ratios = f"p50 x{p50_ratio:.2f}, p95 x{p95_ratio:.2f}"
    status = OK
    # A call carrying more requests takes longer, at most in proportion (its fixed cost does
    # not grow): judged per request carried, bigger batches never look like a slower model.
    batch_ratio = _batch_ratio(baseline_traffic, live_traffic) if stage in PER_CALL_STAGES else None
    carried = max(1.0, batch_ratio or 1.0)
    effect /= carried
    if carried > 1:
        ratios += f", over batches x{carried:.2f} the baseline's size"
    size = f" per request carried ({ratios})" if carried > 1 else ""
    if d <= critical:
        by, why = BY_KS, f"no significant change: {ks}"
    elif effect >= t.drift_ratio:
        status = DRIFT
        why = f"{ks} and {by.split('_')[0]} x{effect:.2f}{size} >= drift_ratio {t.drift_ratio:g}"
    elif effect >= t.warn_ratio:
        status = WARN
        why = (
            f"{ks} and {by.split('_')[0]} x{effect:.2f}{size} >= warn_ratio {t.warn_ratio:g} "
            f"(< drift_ratio {t.drift_ratio:g})"
        )
    else:
        why = f"{ks}, but {ratios}: below warn_ratio {t.warn_ratio:g}"
    return StageDrift(
        stage,
        status,
        n,
        m,
        d,
        critical,
        p95_live,
        p95_baseline,
        p95_ratio,
        p99_ratio,
        p50_live,
        p50_baseline,
        p50_ratio,
        _round(n_units),
        _round(m_units),
        round(effect, 4),
        _round(batch_ratio) if carried > 1 else None,
        by,
        why,
    )


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
        *,
        baseline_traffic: Traffic | None = None,
        live_traffic: Traffic | None = None,
    ) -> DriftResult:
        """Judge every stage, then apply hysteresis over ``previous`` (a stage missing on either side has no data).

        With both sides' ``Traffic``, KS counts batches instead of requests and the result
        compares the loads.
        """
        t = self.thresholds
        stages = tuple(
            compare_stage(s, baseline.get(s, {}), live.get(s, {}), t, baseline_traffic, live_traffic)
            for s in t.stages
        )
        raw_status = max((s.status for s in stages), key=_SEVERITY.__getitem__)
        status, consecutive = settle(raw_status, previous, t)
        named = {DRIFT, WARN} if status in (WARN, DRIFT) else {DRIFT}
        drifted = tuple(s.stage for s in stages if s.status in named)
        load = None
        if baseline_traffic is not None and live_traffic is not None:
            load = compare_load(baseline_traffic, live_traffic, t.load_tolerance)
        return DriftResult(status, raw_status, drifted, stages, now, consecutive, t, load)


def _batch_ratio(baseline: Traffic | None, live: Traffic | None) -> float | None:
    if baseline is None or live is None or baseline.mean_batch is None or live.mean_batch is None:
        return None
    return live.mean_batch / baseline.mean_batch


def _within(ratio: float, tolerance: float) -> bool:
    return 1 / tolerance <= ratio <= tolerance


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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
