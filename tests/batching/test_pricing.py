"""Prices per model: cached input is part of the input and priced apart, never twice."""

from __future__ import annotations

import dataclasses

import pytest

from batching.pricing import DEFAULT_PRICES, ModelPrice, PriceTable, Usage
from batching.types import InferenceRequest, ModelCall, ModelReply
from tests.batching.engine_helpers import ScriptedGemini, make_engine, run


def test_cached_tokens_are_taken_out_of_the_input_before_pricing() -> None:
    table = PriceTable({"m": ModelPrice(input=1.0, output=10.0, cached=0.1)})
    # 1,000,000 prompt tokens of which 400,000 cached, 100,000 output.
    cost = table.cost_usd(
        "m", Usage(input_tokens=1_000_000, output_tokens=100_000, cached_input_tokens=400_000)
    )
    assert cost == pytest.approx(0.6 * 1.0 + 0.4 * 0.1 + 0.1 * 10.0)


def test_the_batch_api_costs_half() -> None:
    table = PriceTable()
    usage = Usage(input_tokens=12_345, output_tokens=678)
    assert table.cost_usd("gemini-2.5-flash", usage, batch=True) == pytest.approx(
        table.cost_usd("gemini-2.5-flash", usage) / 2
    )


def test_versioned_model_names_cost_as_their_model() -> None:
    table = PriceTable()
    assert table.of("models/gemini-2.5-flash-001") == DEFAULT_PRICES["gemini-2.5-flash"]
    assert table.of("gemini-2.5-flash-lite") == DEFAULT_PRICES["gemini-2.5-flash-lite"]
    assert table.of("some-other-model") is None
    assert table.cost_usd("some-other-model", Usage(1000, 1000)) == 0.0


def test_overrides_keep_the_parts_they_leave_out_and_star_prices_the_rest() -> None:
    table = PriceTable.parse("gemini-2.5-flash:output=3; *:input=1,output=2")
    flash = table.of("gemini-2.5-flash")
    assert flash == ModelPrice(input=DEFAULT_PRICES["gemini-2.5-flash"].input, output=3.0, cached=0.03)
    assert table.of("anything") == ModelPrice(1.0, 2.0, 0.0)


@pytest.mark.parametrize("text", ["nomodel", "m:input", "m:price=1", "m:input=x", "m:input=-1"])
def test_a_malformed_price_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PriceTable.parse(text)


def test_geminis_cached_token_count_reaches_the_reply_and_is_priced_lower() -> None:
    from google.genai import types

    from batching.genai_client import _reply
    from batching.types import InferenceResult
    from workers.batch_job import usage_of

    usage = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=10_000, candidates_token_count=100, cached_content_token_count=8_000
    )
    reply = _reply("an answer", types.GenerateContentResponse(usage_metadata=usage))
    assert (reply.input_tokens, reply.output_tokens, reply.cached_tokens) == (10_000, 100, 8_000)
    result = InferenceResult(
        id="t",
        ok=True,
        model="gemini-2.5-flash",
        text="an answer",
        input_tokens=10_000,
        output_tokens=100,
        cached_input_tokens=8_000,
    )
    shown = usage_of(result, PriceTable(), batch_api=False)
    flash = DEFAULT_PRICES["gemini-2.5-flash"]
    expected = (2_000 * flash.input + 8_000 * flash.cached + 100 * flash.output) / 1e6
    assert shown["cached_input_tokens"] == 8_000 and shown["cost_usd"] == pytest.approx(expected, abs=1e-9)


def test_a_packed_calls_cached_tokens_are_shared_whole_among_its_items() -> None:
    """Cached and fresh input are shared apart, so no item's cached share exceeds its input
    and none is lost: 2,034 of 2,035 cached, weights 167, 186 and 23 (a rounding trap)."""

    class CachingGemini(ScriptedGemini):
        async def generate(self, call: ModelCall) -> ModelReply:
            reply = await super().generate(call)
            return dataclasses.replace(reply, input_tokens=2035, cached_tokens=2034)

    prompts = ["a" * 668, "b" * 744, "c" * 92]
    requests = [
        InferenceRequest(id=f"t{n}", prompt=p, model="m", strategy="pack") for n, p in enumerate(prompts)
    ]
    results = run(make_engine(CachingGemini(), []), requests)
    assert [r.items_in_call for r in results] == [3, 3, 3]
    assert sum(r.input_tokens for r in results) == 2035
    assert sum(r.cached_input_tokens for r in results) == 2034
    assert all(0 <= r.cached_input_tokens <= r.input_tokens for r in results)
