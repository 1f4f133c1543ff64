"""Prompts the simulator blocks ([[sim:block]]): no candidates, alone, packed and streamed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google import genai
from google.genai import types

from batching.genai_client import GenaiModelClient
from batching.packed_prompt import render_items
from batching.simulator import SimulatorThread, answer_for
from batching.tokens import estimate_tokens
from batching.types import ModelCall, ModelCallError, ModelReply
from tests.batching.sim_helpers import MODEL, configure, packed_call, sim_stats, trusted_answers

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]


BLOCK = "[[sim:block]]"


def _assert_blocked(response: types.GenerateContentResponse, prompt_tokens: int) -> None:
    """Gemini's answer to a blocked prompt: no candidates, the reason, and the prompt's usage."""
    assert not response.candidates and response.text is None
    assert response.prompt_feedback is not None
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count == prompt_tokens
    assert not usage.candidates_token_count and usage.total_token_count == prompt_tokens


def test_a_prompt_with_the_block_marker_is_blocked_with_no_candidates(
    client: genai.Client, sim: SimulatorThread
) -> None:
    prompt = f"tell me something unsafe {BLOCK}"
    response = client.models.generate_content(model=MODEL, contents=prompt)
    _assert_blocked(response, estimate_tokens(prompt))
    assert client.models.generate_content(model=MODEL, contents="a safe one").text == answer_for("a safe one")
    stats = sim_stats(sim)
    assert (stats["blocked_calls"], stats["calls"], stats["items"], stats["errors"]) == (1, 1, 1, 0)


def test_one_blocked_item_blocks_its_whole_packed_call(client: genai.Client, sim: SimulatorThread) -> None:
    items: list[dict[str, Any]] = [{"id": f"r{n}", "prompt": f"question {n}"} for n in range(4)]
    items[2]["context"] = {"note": f"hidden in the context {BLOCK}"}
    prompt = render_items(items)
    response = packed_call(client, items)
    _assert_blocked(response, estimate_tokens(prompt))
    del items[2]
    assert trusted_answers(packed_call(client, items).text, items) == {
        i["id"]: answer_for(i["prompt"]) for i in items
    }
    stats = sim_stats(sim)
    assert (stats["blocked_calls"], stats["calls"], stats["packed_calls"], stats["items"]) == (1, 1, 1, 3)


def test_a_blocked_stream_is_one_chunk_without_candidates(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = f"stream something unsafe {BLOCK}"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt))
    assert len(chunks) == 1
    _assert_blocked(chunks[0], estimate_tokens(prompt))
    assert (sim_stats(sim)["blocked_calls"], sim_stats(sim)["stream_calls"]) == (1, 0)


def test_the_block_marker_is_configurable_and_can_be_switched_off(
    client: genai.Client, sim: SimulatorThread
) -> None:
    configure(sim, block_marker="")
    prompt = f"no filter {BLOCK}"
    assert client.models.generate_content(model=MODEL, contents=prompt).text == answer_for(prompt)
    configure(sim, block_marker="<forbidden>")
    assert not client.models.generate_content(model=MODEL, contents="x <forbidden> y").candidates
    items: list[dict[str, Any]] = [{"id": "a", "prompt": "fine"}, {"id": "b", "prompt": "x <forbidden> y"}]
    assert "<forbidden>" not in render_items(items)  # escaped in the item list, found all the same
    assert not packed_call(client, items).candidates
    assert sim_stats(sim)["blocked_calls"] == 2


@pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])
def test_the_genai_client_reports_a_blocked_prompt_as_model_blocked(
    sim: SimulatorThread, stream: bool
) -> None:
    async def scenario() -> tuple[ModelCallError, ModelReply]:
        client = GenaiModelClient("test", sim.url, timeout_s=10)
        try:
            blocked = ModelCall(model=MODEL, parts=(f"unsafe {BLOCK}",))
            with pytest.raises(ModelCallError) as failed:
                if stream:
                    await client.generate_stream(blocked, lambda _text: None)
                else:
                    await client.generate(blocked)
            fine = await client.generate(ModelCall(model=MODEL, parts=("fine",)))
            return failed.value, fine
        finally:
            await client.aclose()

    error, fine = asyncio.run(scenario())
    assert (error.code, error.retryable, error.status) == ("model_blocked", False, None)
    assert error.message == "Gemini blocked the prompt (block reason SAFETY)"
    assert fine.text == answer_for("fine")
