"""BatchInferenceEngine packing against a scripted stand-in for Gemini: one call answers many,
and what may not share a call (strategies, tenants, stop sequences) does not."""

from __future__ import annotations

import pytest

from batching.call_pacer import CallPacer
from batching.engine import BatchInferenceEngine
from batching.packed_prompt import parse_items
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.types import InferenceRequest
from tests.batching.engine_helpers import ScriptedGemini, batch, make_engine, run


def test_one_packed_call_answers_every_item_with_its_own_answer() -> None:
    gemini, sleeps = ScriptedGemini(), []
    results = run(make_engine(gemini, sleeps), batch(8))
    assert len(gemini.calls) == 1
    assert [r.id for r in results] == [f"t{i}" for i in range(8)]
    assert all(r.ok and r.text == f"A:p{i}" for i, r in enumerate(results))
    assert all(r.items_in_call == 8 for r in results)
    assert sum(r.input_tokens for r in results) == 100
    assert sum(r.output_tokens for r in results) == 40
    assert gemini.calls[0].generation["max_output_tokens"] > 0


def test_concurrent_strategy_fans_out_within_the_concurrency_limit() -> None:
    gemini, sleeps = ScriptedGemini(), []
    results = run(make_engine(gemini, sleeps), batch(10, strategy="concurrent"))
    assert all(r.ok and r.items_in_call == 1 for r in results)
    assert len(gemini.calls) == 10
    assert gemini.max_in_flight <= 4


def test_context_and_system_travel_with_single_calls() -> None:
    gemini, sleeps = ScriptedGemini(), []
    request = InferenceRequest(id="x", prompt="q", model="m", system="sys", context={"k": 1})
    [result] = run(make_engine(gemini, sleeps), [request])
    call = gemini.calls[0]
    assert result.text == "A:q"
    assert call.system == "sys" and call.parts[-1] == "q" and '"k": 1' in call.parts[0]


def test_duplicate_ids_are_rejected() -> None:
    gemini, sleeps = ScriptedGemini(), []
    with pytest.raises(ValueError):
        run(make_engine(gemini, sleeps), batch(2) + batch(1))


def test_calls_wait_for_their_turn_under_an_rpm_quota() -> None:
    gemini, sleeps = ScriptedGemini(), []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    engine = BatchInferenceEngine(
        gemini,
        PackingLimits(),
        RetryPolicy(attempts=3, base_s=0.1, max_s=1.0),
        max_concurrent_calls=4,
        pacer=CallPacer(60),  # one call per second, burst one
        sleep=fake_sleep,
        clock=lambda: 50.0,  # frozen: every call asks for its turn at the same moment
    )
    results = run(engine, batch(4, strategy="concurrent"))
    assert all(r.ok for r in results) and len(gemini.calls) == 4
    assert sorted(sleeps) == pytest.approx([1.0, 2.0, 3.0])  # the first goes at once


def test_tenants_never_share_a_call_unless_the_operator_opts_in() -> None:
    gemini, sleeps = ScriptedGemini(), []
    mixed = batch(4, tenant="a") + [
        InferenceRequest(id=f"b{i}", prompt=f"q{i}", model="m", tenant="b") for i in range(4)
    ]
    results = run(make_engine(gemini, sleeps), mixed)
    assert all(r.ok for r in results) and len(gemini.calls) == 2
    for call in gemini.calls:
        prompts = {item["prompt"] for item in parse_items(call.parts[-1]) or []}
        assert prompts in ({f"p{i}" for i in range(4)}, {f"q{i}" for i in range(4)})

    shared = ScriptedGemini()
    run(make_engine(shared, sleeps, share_calls_across_tenants=True), mixed)
    assert len(shared.calls) == 1


def test_the_finish_reason_is_kept_per_item() -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.finish_reason = "MAX_TOKENS"
    packed = run(make_engine(gemini, sleeps), batch(2))
    alone = run(make_engine(gemini, sleeps), batch(1, strategy="concurrent"))
    assert {r.finish_reason for r in packed + alone} == {"MAX_TOKENS"}


def test_stop_sequences_never_share_a_call() -> None:
    gemini, sleeps = ScriptedGemini(), []
    requests = batch(3, generation={"stop_sequences": ["END"]})
    results = run(make_engine(gemini, sleeps), requests)
    assert all(r.ok and r.items_in_call == 1 for r in results)
    assert [c.response_schema for c in gemini.calls] == [None] * 3
    assert all(c.generation["stop_sequences"] == ["END"] for c in gemini.calls)
