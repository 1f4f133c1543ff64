"""The two-sample Kolmogorov-Smirnov test on binned latencies: has the distribution changed at all?

``D`` is the largest gap between the two empirical CDFs at any bucket's upper edge (the
buckets of ``baseline.histogram``), and the test rejects "same distribution" when
``D > c(alpha) * sqrt((n + m) / (n * m))`` with ``c(alpha) = sqrt(-ln(alpha / 2) / 2)`` (the
asymptotic two-sided critical value). Binning only ever shrinks ``D`` (the gap is looked at
on fewer points), so the binned test is conservative: its false-alarm rate stays at or below
``alpha`` for independent samples.

``n`` and ``m`` count *independent observations*, not requests, when the side's ``Traffic``
is known (``baseline.traffic``): the requests of one batch share its wait and, packed, one
model call, so a batch counts once (requests outside any batch, such as cache hits, count one
each). Counting requests instead made the test reject at healthy load whenever batches were
large (measured, make run defaults and waves of 60 against a baseline of that same load:
model D 0.18-0.39 against a critical value of 0.05 from 3,800 requests; with the ~160
batches behind them the critical value is 0.23).

Batches counted once, measured over 300 trials of latencies shared within batches of 30
(100 baseline batches, 35 live; a batch's latency lognormal, median 600 ms, sigma 0.25): the
same distribution made KS reject in 1 trial counting batches and in 299 counting requests
(105 of which then warned or drifted); x1.43 drifted in 298. The price is power where
batches are few: with 20 baseline and 30 live batches of 6, x1.43 drifts in 69 % of single
evaluations (every one counting requests, which also alarmed in 24 % of same-distribution
trials); each new slot in the window is another chance.

KS assumes independent samples. Counting batches rather than requests removes the
dependence the batching makes; what remains (a queue backlog delays consecutive batches
alike; the load, hence the batch-size mix, wanders from minute to minute) still makes the
test reject more often than ``alpha`` says at high throughput, and the effect-size guard
(``baseline.stage_drift``) is what keeps that from becoming an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def binned_ks_statistic(a: Mapping[int, int], b: Mapping[int, int]) -> float:
    """The largest gap between the two empirical CDFs at any bucket's upper edge (KS D)."""
    n_a, n_b = sample_count(a), sample_count(b)
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


def sample_count(counts: Mapping[int, int]) -> int:
    """Values in a histogram, refusing entries that would make a silently wrong CDF."""
    for index, count in counts.items():
        # JSON object keys are strings, and strings sort "10" < "9": a silently wrong CDF.
        if not isinstance(index, int) or count < 0:
            raise ValueError(f"histogram entries are int bucket -> count >= 0, not {index!r}: {count!r}")
    return sum(counts.values())
