"""Backoff for retried model calls: a pure function, randomness passed in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``attempts`` tries per call, exponential backoff from ``base_s`` capped at ``max_s``."""

    attempts: int = 5
    base_s: float = 0.2
    max_s: float = 8.0


def backoff_delay(attempt: int, policy: RetryPolicy, server_delay_s: float | None, jitter: float) -> float:
    """Delay before try ``attempt + 1`` after try ``attempt`` (1-based) failed.

    Equal jitter (half fixed, half random with ``jitter`` in [0, 1)) spreads retries of
    many items without ever retrying at once; a server's RetryInfo delay is a floor.
    """
    exponential = min(policy.max_s, policy.base_s * 2 ** (attempt - 1))
    delay = exponential / 2 + jitter * exponential / 2
    if server_delay_s is not None:
        delay = max(delay, server_delay_s)
    return min(policy.max_s, delay)
