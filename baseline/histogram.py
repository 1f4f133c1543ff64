"""Log-linear latency buckets with fixed, documented edges, so histograms merge exactly.

A value ``v`` milliseconds falls in bucket ``i = 1 + floor(log(v / MIN_MS) / log(GROWTH))``
(bucket 0 holds everything below ``MIN_MS``). Bucket ``i`` spans
``[MIN_MS * GROWTH**(i-1), MIN_MS * GROWTH**i)``; reporting its geometric middle is off by
at most ``sqrt(GROWTH) - 1`` ≈ 0.995 % of the true value. Counts from any number of
processes add up bucket by bucket, so merged percentiles are exactly as good as local ones.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

#: Smallest value told apart (ms); smaller values share bucket 0.
MIN_MS = 0.01
#: Ratio of consecutive bucket edges.
GROWTH = 1.02
#: Largest bucket index used (values beyond ~3 hours share it).
MAX_INDEX = 1 + math.ceil(math.log(1e7 / MIN_MS) / math.log(GROWTH))
#: Worst relative error of a reported percentile (besides bucket 0 and MAX_INDEX).
RELATIVE_ERROR = math.sqrt(GROWTH) - 1

_LOG_GROWTH = math.log(GROWTH)


def bucket_of(value_ms: float) -> int:
    """The bucket index of ``value_ms``."""
    if not value_ms >= MIN_MS:  # also NaN and negatives
        return 0
    return min(MAX_INDEX, 1 + int(math.log(value_ms / MIN_MS) / _LOG_GROWTH))


def upper_edge(index: int) -> float:
    """The exclusive upper edge (ms) of bucket ``index``."""
    return MIN_MS * GROWTH**index


def representative(index: int) -> float:
    """The value reported for bucket ``index``: its geometric middle (0 for bucket 0)."""
    if index <= 0:
        return 0.0
    return MIN_MS * GROWTH ** (index - 0.5)


def counts_of(values_ms: Iterable[float]) -> Counter[int]:
    """Bucket counts of raw values."""
    return Counter(bucket_of(v) for v in values_ms)


def merge(histograms: Iterable[Mapping[int, int]]) -> Counter[int]:
    """Add histograms bucket by bucket."""
    total: Counter[int] = Counter()
    for histogram in histograms:
        total.update(histogram)
    return total


def percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q``-quantile (0..1) by nearest rank over the buckets; None when empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return representative(index)
    return representative(max(counts))


def count_at_most(counts: Mapping[int, int], limit_ms: float) -> int:
    """How many values are at most ``limit_ms`` (buckets whose upper edge is ≤ it; Prometheus ``le``)."""
    return sum(n for index, n in counts.items() if upper_edge(index) <= limit_ms * (1 + 1e-12))
