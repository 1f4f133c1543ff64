"""Contained failures (issue 14), proved against the simulator: a blocked item fails alone and
costs a few calls, a packed answer cut short keeps what it finished.

First the engine on the real google-genai SDK and an in-process simulator (no Redis), then the
whole stack: submit -> batch -> simulator -> poll. Waits are polls with deadlines.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batching.engine import BatchInferenceEngine
from batching.genai_client import GenaiModelClient
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.simulator import SimulatorThread, answer_for, start_in_thread
from batching.simulator.settings import SimulatorSettings
from batching.types import InferenceRequest, InferenceResult
from tests.clients import ClientRun, submit_and_collect
from tests.conftest import Stack, running_stack
from tests.harness import http_json

pytestmark = pytest.mark.timeout(120)

MODEL = "gemini-2.5-flash"
BLOCK = "[[sim:block]]"
#: The index of the blocked task among the 32.
BLOCKED = 13
#: A packed call of 32 whose one bad item is found by halving: 2 calls a level, 5 levels.
EXTRA_CALLS_FOR_ONE_BAD_IN_32 = 10


def _tag() -> str:
    return secrets.token_hex(3)


def _blocked_batch(tag: str) -> list[str]:
    prompts = [f"{tag} contained {i}: what is {i} cubed?" for i in range(32)]
    prompts[BLOCKED] = f"{tag} contained {BLOCKED}: something unsafe {BLOCK}"
    return prompts


def _long_batch(tag: str) -> list[str]:
    """32 prompts of about 1,000 characters: their answers (which quote them) overflow one
    call's 8,192 output tokens by a few entries."""
    return [f"{tag} long {i}: " + f"tell me about item {i} " * 45 for i in range(32)]


#: ``pack`` and 400 output tokens each: the 32 share one call whose budget is capped at 8,192
#: tokens, while each answer (about 290 tokens) fits its own budget.
LONG_SETTINGS: dict[str, Any] = {"strategy": "pack", "generation": {"max_output_tokens": 400}}


def _all_calls(stats: dict[str, Any]) -> int:
    """Every generateContent call the simulator saw: answered, blocked or failed."""
    return int(stats["calls"] + stats["blocked_calls"] + stats["errors"])


# --- the engine, on the SDK and an in-process simulator ---------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    handle = start_in_thread(
        SimulatorSettings(overhead_ms=1.0, per_input_token_ms=0.0, per_output_token_ms=0.0, max_concurrent=0)
    )
    try:
        yield handle
    finally:
        handle.stop()


def _run_engine(sim: SimulatorThread, requests: list[InferenceRequest]) -> list[InferenceResult]:
    assert http_json("POST", f"{sim.url}/_sim/reset")[0] == 200

    async def scenario() -> list[InferenceResult]:
        client = GenaiModelClient("test", sim.url, timeout_s=30)
        engine = BatchInferenceEngine(
            client, PackingLimits(), RetryPolicy(attempts=2, base_s=0.01, max_s=0.05), max_concurrent_calls=8
        )
        try:
            return await engine.run(requests)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_the_engine_confines_a_blocked_item_with_ten_extra_calls(sim: SimulatorThread) -> None:
    prompts = _blocked_batch(_tag())
    requests = [InferenceRequest(id=f"r{i}", prompt=p, model=MODEL) for i, p in enumerate(prompts)]
    results = _run_engine(sim, requests)
    stats = http_json("GET", f"{sim.url}/_sim/stats")[2]
    assert _all_calls(stats) - 1 == EXTRA_CALLS_FOR_ONE_BAD_IN_32, stats
    assert (stats["blocked_calls"], stats["calls"], stats["errors"]) == (
        6,
        5,
        0,
    )  # 32, 16, 8, 4, 2, 1 blocked
    for i, (prompt, result) in enumerate(zip(prompts, results, strict=True)):
        if i != BLOCKED:
            assert result.ok and result.text == answer_for(prompt), result
    blocked = results[BLOCKED]
    assert (blocked.ok, blocked.error_code, blocked.items_in_call) == (False, "model_blocked", 1)
    assert "block reason SAFETY" in (blocked.error_message or "")


def test_the_engine_keeps_what_a_cut_answer_finished(sim: SimulatorThread) -> None:
    prompts = _long_batch(_tag())
    requests = [
        InferenceRequest(id=f"r{i}", prompt=p, model=MODEL, **LONG_SETTINGS) for i, p in enumerate(prompts)
    ]
    results = _run_engine(sim, requests)
    assert [r.text for r in results] == [answer_for(p) for p in prompts]
    stats = http_json("GET", f"{sim.url}/_sim/stats")[2]
    # The cut call and one packed call for the entries it did not reach (before: 1 + 32 alone).
    assert (_all_calls(stats), stats["packed_calls"], stats["plain_calls"]) == (2, 2, 0), stats
    sizes = sorted({r.items_in_call for r in results})
    assert (
        len(sizes) == 2 and sizes[1] == 32 and sum(r.items_in_call == sizes[0] for r in results) == sizes[0]
    )
    assert {r.finish_reason for r in results} == {"STOP"}


# --- the whole stack --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(redis_url: str, logs_dir: Path) -> Iterator[Stack]:
    """tests/conftest.py's stack, with a window long enough that a burst of 32 is one batch
    (it leaves when the 32nd arrives): how fast submissions arrive must not split it."""
    with running_stack(redis_url, logs_dir, BATCHGATE_BATCH_WINDOW_MS="5000") as running:
        yield running


def _submit_32(stack: Stack, bodies: list[dict[str, Any]]) -> ClientRun:
    assert len(bodies) == 32  # the batch size: the batch leaves as the last one arrives
    stack.sim_reset()
    run = submit_and_collect(stack.api, api_key=stack.api_key, bodies=bodies, timeout=60)
    assert all(body is not None for body in run.bodies), run.failures
    assert {body["timings"]["batch_size"] for body in run.bodies if body} == {32}  # one batch
    return run


def test_one_blocked_task_among_32_fails_alone_and_costs_at_most_ten_calls(stack: Stack) -> None:
    prompts = _blocked_batch(_tag())
    run = _submit_32(stack, [{"prompt": p} for p in prompts])
    stats = stack.sim_stats()
    assert _all_calls(stats) - 1 <= EXTRA_CALLS_FOR_ONE_BAD_IN_32, stats
    assert stats["blocked_calls"] == 6 and stats["errors"] == 0, stats
    for i, (prompt, body) in enumerate(zip(prompts, run.bodies, strict=True)):
        assert body is not None
        if i == BLOCKED:
            assert body["status"] == "failed", body
            assert body["error"]["code"] == "model_blocked", body
            assert "blocked the prompt (block reason SAFETY)" in body["error"]["message"], body
        else:
            assert body["status"] == "succeeded", body
            assert body["result"]["text"] == answer_for(prompt)
    mates = [body for i, body in enumerate(run.bodies) if i != BLOCKED and body]
    assert max(body["timings"]["items_in_call"] for body in mates) == 16  # the half without it


def test_a_cut_packed_answer_is_kept_and_the_rest_packed_again(stack: Stack) -> None:
    prompts = _long_batch(_tag())
    run = _submit_32(stack, [{"prompt": p, **LONG_SETTINGS} for p in prompts])
    for prompt, body in zip(prompts, run.bodies, strict=True):
        assert body is not None and body["status"] == "succeeded", body
        assert body["result"]["text"] == answer_for(prompt)
    stats = stack.sim_stats()
    assert (_all_calls(stats), stats["packed_calls"]) == (2, 2), stats  # before: 1 + 32 alone
    assert max(body["timings"]["items_in_call"] for body in run.bodies if body) == 32
