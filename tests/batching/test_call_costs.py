"""A batch's CPU cost, fixed and per item, fitted from what batches took; and the call meter."""

from __future__ import annotations

import asyncio
import time

import pytest

from batching.call_costs import PRIOR_FIXED_S, PRIOR_PER_ITEM_S, CallCostModel, metered, with_call_cpu


def test_before_any_batch_the_priors_hold() -> None:
    assert CallCostModel().fit() == (PRIOR_FIXED_S, PRIOR_PER_ITEM_S)


def test_batches_of_varied_sizes_give_the_line_back() -> None:
    model = CallCostModel()
    for items in [1, 4, 16, 32, 2, 8] * 5:
        model.record(items, 0.006 + 0.0008 * items)
    fixed, per_item = model.fit()
    assert fixed == pytest.approx(0.006)
    assert per_item == pytest.approx(0.0008)


def test_batches_all_of_one_size_split_their_cost_by_the_per_item_prior() -> None:
    model = CallCostModel(prior_per_item_s=0.001)
    for _ in range(10):
        model.record(1, 0.009)
    assert model.fit() == (pytest.approx(0.008), 0.001)


def test_recent_batches_outweigh_old_ones() -> None:
    model = CallCostModel(half_life=5)
    for items in [1, 8] * 50:
        model.record(items, 0.020 + 0.001 * items)  # a slow client, long ago
    for items in [1, 8] * 50:
        model.record(items, 0.004 + 0.001 * items)  # after it was made cheaper
    assert model.fixed_s == pytest.approx(0.004, abs=0.0005)


def test_a_cost_is_never_negative() -> None:
    model = CallCostModel()
    for items, cpu in [(1, 0.010), (32, 0.011), (1, 0.010), (32, 0.002)]:
        model.record(items, cpu)
    fixed, per_item = model.fit()
    assert fixed >= 0 and per_item >= 0


async def _spin(cpu_s: float, pause_s: float) -> float:
    """Burn ``cpu_s`` of CPU, wait ``pause_s`` (other tasks run), burn ``cpu_s`` again."""
    for _ in range(2):
        started = time.thread_time()
        while time.thread_time() - started < cpu_s:
            pass
        await asyncio.sleep(pause_s)
    return cpu_s


def test_the_meter_counts_the_steps_of_metered_calls_only() -> None:
    async def batch() -> list[float]:
        # Two metered calls interleave with an unmetered neighbour that burns more than both.
        return list(
            await asyncio.gather(metered(_spin(0.01, 0.02)), metered(_spin(0.005, 0.02)), _spin(0.03, 0.0))
        )

    results, cpu = asyncio.run(with_call_cpu(batch()))
    assert results == [0.01, 0.005, 0.03]
    assert 0.029 <= cpu < 0.045  # 2 x 10 ms + 2 x 5 ms, not the neighbour's 60 ms


def test_a_metered_call_that_fails_or_is_cancelled_still_behaves_as_the_call() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad reply")

    with pytest.raises(ValueError, match="bad reply"):
        asyncio.run(with_call_cpu(metered(fails())))

    async def cancelled() -> None:
        task = asyncio.ensure_future(with_call_cpu(metered(asyncio.sleep(10))))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())


def test_outside_a_measured_batch_a_call_is_not_wrapped() -> None:
    async def plain() -> int:
        return 1

    coro = plain()
    assert metered(coro) is coro
    coro.close()
