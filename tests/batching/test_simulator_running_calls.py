"""The simulator's running calls, counted pro rata at a given moment (no sleeping)."""

from __future__ import annotations

import pytest

from batching.simulator.stats import RunningCalls


def test_running_calls_count_their_work_pro_rata_until_they_end() -> None:
    running = RunningCalls()
    first = running.start(now=100.0, duration_s=4.0, items=20)
    running.start(now=102.0, duration_s=2.0, items=8)
    assert running.progress(100.0) == {"items_in_progress": 0.0, "busy_ms_in_progress": 0.0}
    at_103 = running.progress(103.0)
    assert at_103["items_in_progress"] == pytest.approx(20 * 3 / 4 + 8 * 1 / 2)
    assert at_103["busy_ms_in_progress"] == pytest.approx(4000.0)
    # A call past its planned time (a slow answer) never counts more than its items.
    assert running.progress(110.0)["items_in_progress"] == pytest.approx(28.0)
    running.end(first)
    running.end(first)  # ending twice is harmless
    assert running.progress(103.0)["items_in_progress"] == pytest.approx(4.0)


def test_an_instant_call_counts_whole_at_once() -> None:
    running = RunningCalls()
    running.start(now=5.0, duration_s=0.0, items=3)
    assert running.progress(5.0)["items_in_progress"] == 3.0
