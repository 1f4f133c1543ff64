"""The flush decision, driven with explicit times (no sleeping)."""

from __future__ import annotations

import pytest

from batching.flush_policy import FlushLimits, FlushNow, WaitUntil, decide

LIMITS = FlushLimits(max_size=8, window_s=0.050)


@pytest.mark.parametrize(
    ("pending", "first", "now", "expected"),
    [
        (0, None, 10.0, None),
        (0, 10.0, 10.0, None),
        (1, 10.0, 10.0, WaitUntil(10.050)),
        (7, 10.0, 10.049, WaitUntil(10.050)),
        (7, 10.0, 10.050, FlushNow("deadline")),
        (3, 10.0, 11.0, FlushNow("deadline")),
        (8, 10.0, 10.0, FlushNow("size")),
        (9, 10.0, 10.001, FlushNow("size")),
    ],
)
def test_decide(pending: int, first: float | None, now: float, expected: object) -> None:
    assert decide(pending, first, now, LIMITS) == expected


def test_window_is_measured_from_the_first_request_not_the_latest() -> None:
    # Requests keep arriving; the deadline does not move.
    assert decide(2, 10.0, 10.030, LIMITS) == WaitUntil(10.050)
    assert decide(5, 10.0, 10.045, LIMITS) == WaitUntil(10.050)


def test_zero_window_flushes_immediately_and_huge_window_only_by_size() -> None:
    assert decide(1, 5.0, 5.0, FlushLimits(max_size=100, window_s=0.0)) == FlushNow("deadline")
    huge = FlushLimits(max_size=4, window_s=1e9)
    assert decide(3, 5.0, 1e6, huge) == WaitUntil(5.0 + 1e9)
    assert decide(4, 5.0, 5.0, huge) == FlushNow("size")


ADAPTIVE = FlushLimits(max_size=8, window_s=0.050, max_in_flight=2, safety_s=5.0)


def test_adaptive_flushes_at_once_while_a_slot_is_free() -> None:
    assert decide(1, 10.0, 10.0, ADAPTIVE, in_flight=0) == FlushNow("slot_free")
    assert decide(3, 10.0, 10.0, ADAPTIVE, in_flight=1) == FlushNow("slot_free")


def test_adaptive_keeps_filling_while_every_slot_is_busy() -> None:
    assert decide(3, 10.0, 10.2, ADAPTIVE, in_flight=2) == WaitUntil(15.0)  # no 50 ms window here
    assert decide(8, 10.0, 10.2, ADAPTIVE, in_flight=2) == FlushNow("size")
    assert decide(3, 10.0, 15.0, ADAPTIVE, in_flight=2) == FlushNow("deadline")  # the safety net
    assert decide(0, None, 10.0, ADAPTIVE, in_flight=2) is None
