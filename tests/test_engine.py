"""BatchInferenceEngine against a scripted stand-in for Gemini (the one outside dependency)."""

from __future__ import annotations

import asyncio
import json

import pytest

from batching.call_pacer import CallPacer
from batching.engine import BatchInferenceEngine
from batching.packed_prompt import parse_items
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.types import InferenceRequest, ModelCall, ModelCallError, ModelReply


class ScriptedGemini:
    """Answers ``A:<prompt>``; can drop items, fail calls, and count concurrency."""

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []
        self.fail_next: list[ModelCallError] = []
        self.drop: set[str] = set()
        self.always_fail: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.fail_next:
                raise self.fail_next.pop(0)
            items = parse_items(call.parts[-1]) if call.response_schema else None
            if items is None:
                if call.parts[-1] in self.always_fail:
                    raise ModelCallError("model_unavailable", "INTERNAL boom", status=500, retryable=True)
                return ModelReply(f"A:{call.parts[-1]}", input_tokens=10, output_tokens=5)
            answers = [
                {"id": i["id"], "answer": f"A:{i['prompt']}"}
                for i in items
                if i["prompt"] not in self.drop and i["prompt"] not in self.always_fail
            ]
            return ModelReply(json.dumps({"answers": answers}), input_tokens=100, output_tokens=40)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def make_engine(gemini: ScriptedGemini, sleeps: list[float], **limits: object) -> BatchInferenceEngine:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return BatchInferenceEngine(
        gemini,
        PackingLimits(**limits),  # type: ignore[arg-type]
        RetryPolicy(attempts=3, base_s=0.1, max_s=1.0),
        max_concurrent_calls=4,
        sleep=fake_sleep,
        jitter=lambda: 0.5,
    )


def batch(n: int, **kw: object) -> list[InferenceRequest]:
    return [InferenceRequest(id=f"t{i}", prompt=f"p{i}", model="m", **kw) for i in range(n)]  # type: ignore[arg-type]


def run(engine: BatchInferenceEngine, requests: list[InferenceRequest]) -> list:
    return asyncio.run(engine.run(requests))


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


def test_missing_items_are_retried_alone() -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.drop = {"p2", "p5"}
    results = run(make_engine(gemini, sleeps), batch(6))
    assert all(r.ok for r in results)
    assert results[2].text == "A:p2" and results[2].items_in_call == 1
    single_calls = [c for c in gemini.calls if c.response_schema is None]
    assert sorted(c.parts[-1] for c in single_calls) == ["p2", "p5"]


def test_failed_calls_are_retried_with_backoff() -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.fail_next = [
        ModelCallError("model_rate_limited", "slow down", status=429, retryable=True, retry_after_s=0.7),
        ModelCallError("model_unavailable", "UNAVAILABLE", status=503, retryable=True),
    ]
    results = run(make_engine(gemini, sleeps), batch(4))
    assert all(r.ok for r in results)
    assert all(r.attempts == 3 for r in results)
    assert sleeps == pytest.approx(
        [0.7, 0.15]
    )  # server delay honoured, then equal-jitter backoff of attempt 2


def test_an_item_that_keeps_failing_fails_alone() -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.always_fail = {"p3"}
    results = run(make_engine(gemini, sleeps), batch(5))
    assert [r.ok for r in results] == [True, True, True, False, True]
    failed = results[3]
    assert failed.error_code == "model_unavailable"
    assert "after 4 attempt(s)" in (failed.error_message or "")  # 1 packed + 3 alone
    assert "HTTP 500" in (failed.error_message or "")


def test_non_retryable_errors_fail_at_once() -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.fail_next = [ModelCallError("model_rejected_request", "INVALID_ARGUMENT", status=400)]
    results = run(make_engine(gemini, sleeps), batch(2))
    assert [r.ok for r in results] == [False, False]
    assert sleeps == []
    assert len(gemini.calls) == 1


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
