"""What a load run cost, from two readings of the tenant's usage."""

from __future__ import annotations

import pytest
from batchgate_client import UsageTotals

from loadtest.run_cost import UsageReader, cost_line, run_cost


def test_the_cost_of_a_run_is_the_difference_of_two_readings() -> None:
    before = UsageTotals(
        requests=10, input_tokens=1000, cached_input_tokens=0, output_tokens=200, cost_usd=0.001
    )
    after = UsageTotals(
        requests=2010,
        model_calls=130.5,
        input_tokens=401_000,
        cached_input_tokens=100_000,
        output_tokens=80_200,
        cost_usd=0.301,
    )
    spent = run_cost(before, after)
    assert spent is not None
    assert (spent["requests"], spent["input_tokens"], spent["output_tokens"]) == (2000, 400_000, 80_000)
    assert spent["cost_usd"] == pytest.approx(0.3) and spent["cost_usd_per_1k_requests"] == pytest.approx(
        0.15
    )
    assert spent["cached_input_share"] == 0.25 and spent["model_calls"] == 130.5
    assert "2000 requests" in cost_line(spent) and "(25 % cached)" in cost_line(spent)


def test_a_target_that_does_not_say_leaves_the_cost_out() -> None:
    assert run_cost(None, UsageTotals()) is None
    assert cost_line(None).startswith("cost: not known")
    assert UsageReader("http://127.0.0.1:9", "bg_none").read() is None  # nothing listens there


def test_the_last_reading_waits_for_the_tasks_still_in_flight() -> None:
    readings = [UsageTotals(requests=n) for n in (90, 97, 100, 100, 100)]

    class Draining(UsageReader):
        def read(self) -> UsageTotals | None:
            return readings.pop(0)

    now = [0.0]
    reader = Draining("http://unused", "bg_unused")
    assert reader.settled(
        clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    ) == UsageTotals(requests=100)
    assert now[0] == 3.0 and len(readings) == 1  # stopped at the first two equal readings
