"""How many calls the simulator serves at once: a max_concurrent limit, and parallel keep-alive load."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from batching.simulator import SimulatorThread, answer_for
from tests.batching.sim_helpers import MODEL, async_sdk_client, configure, sim_stats

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]


def test_max_concurrent_two_keeps_six_calls_two_at_a_time(sim: SimulatorThread) -> None:
    configure(sim, max_concurrent=2, overhead_ms=100.0)

    async def scenario() -> None:
        async with async_sdk_client(sim.url, "v1beta") as sdk:
            calls = [sdk.aio.models.generate_content(model=MODEL, contents=f"c{n}") for n in range(6)]
            await asyncio.gather(*calls)

    asyncio.run(scenario())
    stats = sim_stats(sim)
    assert (stats["calls"], stats["max_in_flight"], stats["in_flight"], stats["waiting"]) == (6, 2, 0, 0)
    assert stats["slot_wait_ms_total"] > 100  # four calls waited at least one turn
    assert stats["busy_ms_total"] >= 6 * 100 * 0.9


def test_two_hundred_concurrent_keepalive_calls_are_served_in_parallel(sim: SimulatorThread) -> None:
    configure(sim, overhead_ms=50.0)
    count = 200
    url = f"{sim.url}/v1beta/models/{MODEL}:generateContent"

    async def scenario() -> tuple[list[str], float]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def call(n: int) -> str:
                body = {"contents": [{"role": "user", "parts": [{"text": f"load {n}"}]}]}
                async with session.post(url, json=body) as response:
                    assert response.status == 200
                    reply = await response.json()
                    return str(reply["candidates"][0]["content"]["parts"][0]["text"])

            started = time.monotonic()
            texts = await asyncio.gather(*(call(n) for n in range(count)))
            return texts, time.monotonic() - started

    texts, elapsed = asyncio.run(scenario())
    assert texts == [answer_for(f"load {n}") for n in range(count)]
    assert elapsed < 2.0, f"{count} calls of 50 ms took {elapsed:.2f}s: served serially?"
    stats = sim_stats(sim)
    assert stats["calls"] == count and stats["max_in_flight"] > count // 4


def test_stats_count_the_running_calls_work_so_far(sim: SimulatorThread) -> None:
    """A call in its slot shows its items and slot time pro rata, and whole once it ends, so
    the difference of two snapshots is the work done between them."""
    configure(sim, overhead_ms=1500.0)

    async def scenario() -> tuple[dict[str, float], dict[str, float]]:
        async with async_sdk_client(sim.url, "v1beta") as sdk:
            call = asyncio.ensure_future(sdk.aio.models.generate_content(model=MODEL, contents="slow"))
            deadline = time.monotonic() + 10
            while (during := sim_stats(sim))["in_flight"] < 1 or during["busy_ms_in_progress"] < 500:
                assert time.monotonic() < deadline, "the call never ran"
                await asyncio.sleep(0.05)
            await call
            return during, sim_stats(sim)

    during, after = asyncio.run(scenario())
    assert during["calls"] == during["items"] == 0
    assert 0.3 < during["items_in_progress"] < 1.0
    assert during["items_in_progress"] == pytest.approx(during["busy_ms_in_progress"] / 1500, abs=0.1)
    assert (after["calls"], after["items"], after["items_in_progress"], after["busy_ms_in_progress"]) == (
        1,
        1,
        0,
        0,
    )
