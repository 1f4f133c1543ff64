"""The model server's own time: the simulator reports it, the google-genai client reads it."""

from __future__ import annotations

import asyncio

import pytest

from batching.genai_client import GenaiModelClient, server_time_s
from batching.simulator.server import SimulatorThread
from batching.types import ModelCall
from tests.harness import http_json


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"server-timing": "gfet4t7; dur=1234"}, 1.234),
        ({"Server-Timing": 'db;dur=10.5;desc="query", app;dur=4.5'}, 0.015),  # entries add up
        ({"Server-Timing": "cache;desc=hit"}, None),  # no duration
        ({"Server-Timing": "x;dur=abc"}, None),
        ({"content-type": "application/json"}, None),
        ({}, None),
    ],
)
def test_server_timing_headers_are_read_in_seconds(headers: dict[str, str], seconds: float | None) -> None:
    value = server_time_s(headers)
    assert value == (pytest.approx(seconds) if seconds is not None else None)


def test_a_call_to_the_simulator_carries_its_own_time_within_the_call(sim: SimulatorThread) -> None:
    status, _, _ = http_json("POST", f"{sim.url}/_sim/config", {"overhead_ms": 50})
    assert status == 200

    async def call() -> float | None:
        client = GenaiModelClient("test", sim.url, timeout_s=10)
        try:
            reply = await client.generate(ModelCall(model="gemini-2.5-flash", parts=("Say hi",)))
        finally:
            await client.aclose()
        return reply.server_s

    server_s = asyncio.run(call())
    assert server_s is not None and 0.05 <= server_s < 1.0  # the 50 ms it was told to take, at least
