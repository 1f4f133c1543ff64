"""Contained failures in the engine: failed calls retried with backoff, missing items retried
alone, refused packed calls split until only the refused item fails."""

from __future__ import annotations

import pytest

from batching.types import ModelCallError
from tests.batching.engine_helpers import ScriptedGemini, batch, call_sizes, make_engine, run


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


def test_non_retryable_errors_are_never_retried() -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.fail_next = [ModelCallError("model_rejected_request", "INVALID_ARGUMENT", status=400)]
    [result] = run(make_engine(gemini, sleeps), batch(1))
    assert (result.ok, result.error_code, result.attempts) == (False, "model_rejected_request", 1)
    assert sleeps == []
    assert len(gemini.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        ModelCallError("model_auth_failed", "PERMISSION_DENIED", status=403),
        ModelCallError("model_not_found", "NOT_FOUND", status=404),
        ModelCallError("model_error", "ValidationError: an SDK surprise"),
    ],
    ids=["auth", "not-found", "surprise"],
)
def test_a_packed_call_that_no_split_can_confine_is_not_split(error: ModelCallError) -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.fail_next = [error]
    results = run(make_engine(gemini, sleeps), batch(8))
    assert {(r.ok, r.error_code, r.items_in_call) for r in results} == {(False, error.code, 8)}
    assert len(gemini.calls) == 1 and sleeps == []


def _refusal(code: str) -> ModelCallError:
    status = {"model_blocked": None, "model_rejected_request": 400, "model_empty_answer": None}[code]
    return ModelCallError(code, f"refused ({code})", status=status)


@pytest.mark.parametrize("code", ["model_blocked", "model_rejected_request", "model_empty_answer"])
def test_a_packed_call_refused_for_one_item_is_split_until_only_that_item_fails(code: str) -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.refuse = {"p13": _refusal(code)}
    results = run(make_engine(gemini, sleeps), batch(32))
    # Halves, then quarters...: the packed call, then two calls per level down to the item.
    assert call_sizes(gemini.calls) == [32, 16, 16, 8, 8, 4, 4, 2, 2, 1, 1]
    assert len(gemini.calls) - 1 == 10
    assert sleeps == []  # refused, never retried
    bad = results[13]
    assert (bad.ok, bad.error_code, bad.items_in_call, bad.attempts) == (False, code, 1, 6)
    status = " (HTTP 400)" if code == "model_rejected_request" else ""
    assert bad.error_message == f"Gemini call failed after 6 attempt(s){status}: refused ({code})"
    good = [r for i, r in enumerate(results) if i != 13]
    assert [r.text for r in good] == [f"A:p{i}" for i in range(32) if i != 13]
    # Each answered by the largest half without p13 that it was in: 16 items (p16..p31), 8 (p0..p7)...
    assert {r.id: (r.items_in_call, r.attempts) for r in good} == {
        **{f"t{i}": (16, 2) for i in range(16, 32)},
        **{f"t{i}": (8, 3) for i in range(8)},
        **{f"t{i}": (4, 4) for i in range(8, 12)},
        **{"t14": (2, 5), "t15": (2, 5), "t12": (1, 6)},
    }


def test_two_refused_items_cost_two_descents() -> None:
    gemini, sleeps = ScriptedGemini(), []
    blocked = ModelCallError("model_blocked", "Gemini blocked the prompt (block reason SAFETY)")
    gemini.refuse = {"p0": blocked, "p31": blocked}
    results = run(make_engine(gemini, sleeps), batch(32))
    assert [r.ok for r in results] == [i not in (0, 31) for i in range(32)]
    assert len(gemini.calls) == 1 + 2 * (1 + 2 * 4)  # each 16-item half: itself, then 4 levels


@pytest.mark.parametrize("status", [503, 429])
def test_a_packed_call_that_outlasts_its_retries_is_not_split(status: int) -> None:
    gemini, sleeps = ScriptedGemini(), []
    gemini.refuse = {"p5": ModelCallError("model_unavailable", "UNAVAILABLE", status=status, retryable=True)}
    results = run(make_engine(gemini, sleeps), batch(32))
    assert len(gemini.calls) == 3 and call_sizes(gemini.calls) == [32, 32, 32]  # its 3 attempts, no split
    assert {(r.ok, r.error_code, r.items_in_call, r.attempts) for r in results} == {
        (False, "model_unavailable", 32, 3)
    }
    assert len(sleeps) == 2


def test_a_split_half_that_outlasts_its_retries_fails_without_splitting_further() -> None:
    gemini, sleeps = ScriptedGemini(), []
    # The packed call is refused; then the first half (p0..p3) meets a model that is down.
    gemini.fail_next = [_refusal("model_blocked")]
    gemini.refuse = {"p1": ModelCallError("model_unavailable", "UNAVAILABLE", status=503, retryable=True)}
    results = run(make_engine(gemini, sleeps), batch(8))
    assert [r.ok for r in results] == [False] * 4 + [True] * 4
    assert {r.error_code for r in results[:4]} == {"model_unavailable"}
    assert all(r.attempts == 4 and r.items_in_call == 4 for r in results[:4])
    assert len(gemini.calls) == 5  # the packed call, 3 attempts of one half, 1 of the other
