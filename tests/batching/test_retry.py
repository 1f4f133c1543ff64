"""Backoff delays: exponential, jittered, capped, and never shorter than the server asks."""

from __future__ import annotations

from batching.retry import RetryPolicy, backoff_delay

POLICY = RetryPolicy(attempts=5, base_s=0.2, max_s=2.0)


def test_delay_grows_exponentially_within_jitter_bounds() -> None:
    for attempt, full in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6)]:
        assert backoff_delay(attempt, POLICY, None, 0.0) == full / 2
        assert abs(backoff_delay(attempt, POLICY, None, 0.999999) - full) < 1e-5


def test_delay_is_capped() -> None:
    assert backoff_delay(10, POLICY, None, 0.999) <= 2.0


def test_server_retry_delay_is_a_floor_up_to_the_cap() -> None:
    assert backoff_delay(1, POLICY, 1.5, 0.0) == 1.5
    assert backoff_delay(1, POLICY, 30.0, 0.0) == 2.0
