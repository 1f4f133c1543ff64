"""Log-linear buckets: percentiles within the documented error, exact merging."""

from __future__ import annotations

import math
import random

from baseline.histogram import (
    RELATIVE_ERROR,
    bucket_of,
    count_at_most,
    counts_of,
    merge,
    percentile,
    representative,
    upper_edge,
)


def exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_every_value_lies_in_its_bucket_and_the_error_is_bounded() -> None:
    rng = random.Random(3)
    for _ in range(5000):
        value = math.exp(rng.uniform(math.log(0.02), math.log(1e6)))
        index = bucket_of(value)
        assert upper_edge(index - 1) <= value < upper_edge(index) * (1 + 1e-12)
        assert abs(representative(index) - value) / value <= RELATIVE_ERROR + 1e-12
    assert RELATIVE_ERROR < 0.01


def test_percentiles_match_exact_ones_within_one_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5, 0.8) for _ in range(20_000)]
    counts = counts_of(values)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        estimate = percentile(counts, q)
        exact = exact_percentile(values, q)
        assert estimate is not None and abs(estimate - exact) / exact <= 0.01


def test_merged_histograms_equal_the_histogram_of_all_values() -> None:
    rng = random.Random(11)
    parts = [[rng.expovariate(1 / 200) for _ in range(500)] for _ in range(3)]
    assert merge(counts_of(p) for p in parts) == counts_of([v for p in parts for v in p])


def test_edge_cases() -> None:
    assert percentile({}, 0.5) is None
    assert bucket_of(0.0) == 0 and bucket_of(-1.0) == 0 and bucket_of(float("nan")) == 0
    assert percentile({0: 3}, 0.99) == 0.0
    counts = counts_of([1.0, 5.0, 50.0, 500.0])
    assert count_at_most(counts, 10.0) == 2 and count_at_most(counts, 1e9) == 4
