"""One stage's verdict: does its live latency differ from the baseline's both significantly and by enough?

Each stage (``DriftThresholds.stages``) is judged on two histograms of
``baseline.histogram`` buckets, the baseline's and the live window's:

* ``insufficient_data`` when either holds fewer than ``min_samples`` values; every
  statistic is then None (none is trustworthy on so few values).
* Otherwise the binned two-sample KS test (``baseline.ks``) says whether the distribution
  changed at all, counting batches rather than requests when the sides' ``Traffic`` is known.
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

Measured (``tests/baseline/test_stage_drift.py``: lognormal latencies, median 600 ms, sigma 0.25;
baseline 5,000 samples, live 1,000, each trial with fresh seeds for both, default thresholds,
every sample independent): same distribution, 0 of 1,000 trials warn or drift (the test
allows 2 of 100; KS at ``alpha = 0.001`` alone would expect 1 of 1,000); every latency x1.3
(p95 +30 %), 1,000 of 1,000 trials drift (the test requires 95 of 100). At ``min_samples``
(200 live samples) the x1.3 shift drifts in 1,000 of 1,000 (964 when only the p95 was
judged): the median is steadier than the p95 on few values. A shift of exactly
``drift_ratio`` (x1.2) drifts in about half of trials (a third when only the p95 was
judged), warns otherwise.

Blind spot: KS watches the body of the distribution, and a slowdown confined to the tail
barely moves the CDF. Measured at the sizes above over 1,000 trials, 5 % of requests twice
as slow (p99 x1.37) is ok in 91 % of trials, 3 % three times as slow (p99 x1.85) in 99 %;
10 % twice as slow drifts in 98 % (the same with or without the median).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from baseline.drift_thresholds import DRIFT, INSUFFICIENT_DATA, OK, WARN, DriftThresholds, check_status
from baseline.histogram import MIN_MS, percentile
from baseline.ks import binned_ks_statistic, ks_critical, sample_count
from baseline.traffic import Traffic, rounded

#: What decided a stage's status (``StageDrift.decided_by``).
BY_MIN_SAMPLES = "min_samples"
BY_KS = "ks"
BY_P50 = "p50_ratio"
BY_P95 = "p95_ratio"
#: Stages timing one model call, which takes longer the more requests it carries.
PER_CALL_STAGES = frozenset({"model"})


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
        check_status(self.status)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageDrift:
        """Inverse of ``to_dict`` (fields added since a result was stored take their defaults)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data or f.default is MISSING})


def compare_stage(
    stage: str,
    baseline: Mapping[int, int],
    live: Mapping[int, int],
    t: DriftThresholds,
    baseline_traffic: Traffic | None = None,
    live_traffic: Traffic | None = None,
) -> StageDrift:
    """Judge one stage's live histogram against its baseline (rules in the module docstring)."""
    n, m = sample_count(live), sample_count(baseline)
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
        rounded(n_units),
        rounded(m_units),
        round(effect, 4),
        rounded(batch_ratio) if carried > 1 else None,
        by,
        why,
    )


def _batch_ratio(baseline: Traffic | None, live: Traffic | None) -> float | None:
    if baseline is None or live is None or baseline.mean_batch is None or live.mean_batch is None:
        return None
    return live.mean_batch / baseline.mean_batch


def _quantile(counts: Mapping[int, int], q: float) -> float:
    value = percentile(counts, q)
    if value is None:  # callers check the sample count first
        raise ValueError("empty histogram has no percentile")
    return value


def _ratio(live_ms: float, baseline_ms: float) -> float:
    # Below MIN_MS the buckets tell nothing apart, so a 0 ms p95 counts as MIN_MS.
    return max(live_ms, MIN_MS) / max(baseline_ms, MIN_MS)
