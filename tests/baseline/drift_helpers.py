"""Synthetic lognormal latencies and the trial bounds the drift tests share."""

from __future__ import annotations

import math
import random
from collections import Counter

from baseline.histogram import counts_of

MEDIAN_MS = 600.0
SIGMA = 0.25
BASELINE_N = 5_000
LIVE_N = 1_000
TRIALS = 100
#: Same-distribution trials allowed to warn or drift (measured: 0 of 1,000; see baseline/stage_drift.py).
FALSE_ALARM_BOUND = 2
#: x1.3 trials required to drift (measured: 1,000 of 1,000; see baseline/stage_drift.py).
DETECTION_BOUND = 95


def latencies(seed: int, n: int, scale: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [scale * rng.lognormvariate(math.log(MEDIAN_MS), SIGMA) for _ in range(n)]


def histogram(seed: int, n: int, scale: float = 1.0) -> Counter[int]:
    return counts_of(latencies(seed, n, scale))
