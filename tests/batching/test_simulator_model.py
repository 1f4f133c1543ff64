"""The simulator's pure parts, without HTTP: answers, cost model, quota window, fault draws, slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from batching.simulator import answer_for
from batching.simulator.answers import value_for_schema
from batching.simulator.cost import QuotaWindow, call_latency_ms, retry_delay_s, stream_delays_ms
from batching.simulator.faults import FaultInjector
from batching.simulator.settings import SimulatorSettings
from batching.simulator.slots import Slots

pytestmark = pytest.mark.timeout(60)


def test_answer_for_is_deterministic_quotes_the_prompt_and_varies_in_length() -> None:
    prompts = [f"question {n}" for n in range(1000)]
    answers = [answer_for(p) for p in prompts]
    assert answers == [answer_for(p) for p in prompts]
    filler_counts = set()
    for prompt, answer in zip(prompts, answers, strict=True):
        assert f"«{prompt}»" in answer
        filler_counts.add(len(answer.split("»: ", 1)[1].split()))
    assert filler_counts == set(range(8, 33))


@pytest.mark.parametrize(
    ("admissions", "rpm", "now", "expected_wait"),
    [
        ([], 2, 0.0, 0.0),
        ([0.0], 2, 10.0, 0.0),
        ([0.0, 10.0], 2, 20.0, 40.0),  # the oldest leaves the window at 60
        ([0.0, 10.0], 2, 60.0, 0.0),  # ...and at 60 it has left
        ([0.0, 10.0], 1, 20.0, 50.0),  # rpm lowered at run time: both must leave
        ([0.0, 10.0], 0, 20.0, 0.0),  # quota off
    ],
)
def test_quota_window_admits_rpm_calls_per_sliding_minute(
    admissions: list[float], rpm: int, now: float, expected_wait: float
) -> None:
    window = QuotaWindow()
    for at in admissions:
        assert window.admit(at, 10) == 0.0
    assert window.admit(now, rpm) == pytest.approx(expected_wait)


def test_quota_window_counts_only_admitted_calls() -> None:
    window = QuotaWindow()
    assert [window.admit(t, 2) for t in (0.0, 1.0, 2.0, 3.0)] == [0.0, 0.0, 58.0, 57.0]
    assert len(window) == 2
    assert window.admit(60.5, 2) == 0.0  # the call at 0.0 has left


@pytest.mark.parametrize(("wait", "announced"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (40.0, 40)])
def test_retry_delay_is_whole_seconds_rounded_up_and_at_least_one(wait: float, announced: int) -> None:
    assert retry_delay_s(wait) == announced


def test_latency_is_overhead_plus_token_costs_and_streaming_costs_the_same() -> None:
    config = SimulatorSettings(overhead_ms=100, per_input_token_ms=0.5, per_output_token_ms=2.0)
    assert call_latency_ms(config, 10, 20) == pytest.approx(100 + 5 + 40)
    delays = stream_delays_ms(config, 10, 20, [10, 10, 20])
    assert delays == pytest.approx([105 + 10, 10, 20])
    assert sum(delays) == pytest.approx(call_latency_ms(config, 10, 20))


def test_fault_injector_replays_the_same_faults_for_the_same_seed() -> None:
    def draws(injector: FaultInjector) -> list[Any]:
        return [injector.call_error(0.5) for _ in range(30)] + [injector.drop_item(0.5) for _ in range(30)]

    first, second = FaultInjector(3), FaultInjector(3)
    assert draws(first) == draws(second)
    first.reseed(3)
    assert draws(first) == draws(FaultInjector(3))
    assert FaultInjector(3).call_error(0.0) is None


def test_slots_limit_holders_and_a_raised_limit_admits_waiters() -> None:
    async def scenario() -> None:
        slots = Slots(1)
        await slots.acquire()
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        assert (slots.held, slots.waiting, second.done()) == (1, 1, False)
        slots.set_limit(2)
        await second
        assert (slots.held, slots.waiting) == (2, 0)
        third = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        third.cancel()  # a cancelled waiter leaves the queue without taking a slot
        with pytest.raises(asyncio.CancelledError):
            await third
        slots.release()
        slots.release()
        assert (slots.held, slots.waiting) == (0, 0)

    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_value_for_schema_follows_gemini_and_json_schema_types() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "STRING"},
            "count": {"type": "integer", "minimum": 50},
            "score": {"type": "NUMBER", "maximum": 2},
            "ok": {"type": "BOOLEAN"},
            "tags": {"type": "ARRAY", "items": {"type": "string"}},
            "mood": {"type": "STRING", "enum": ["calm", "busy"]},
            "maybe": {"type": ["string", "null"]},
        },
    }
    value = value_for_schema(schema, "p")
    assert value == {
        "title": answer_for("p"),
        "count": 50,
        "score": 1.0,
        "ok": True,
        "tags": [answer_for("p")],
        "mood": "calm",
        "maybe": answer_for("p"),
    }
