"""The client's pure parts: events read from lines, backoff, typed errors."""

from __future__ import annotations

import random

from batchgate_client import Backoff, BudgetExhausted, NotFound, RateLimited, Task, TaskFailed, Unavailable
from batchgate_client._retry import retried
from batchgate_client._sse import EventParser
from batchgate_client._types import error_of


def test_events_are_read_from_their_lines_and_comments_are_skipped() -> None:
    parser = EventParser()
    lines = [": keep-alive", "id: 3", "event: delta", 'data: {"text":', 'data: "Hello"}', ""]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert len(events) == 1
    assert (events[0].id, events[0].event, events[0].data) == (3, "delta", {"text": "Hello"})
    assert not events[0].final
    final = [parser.feed(x) for x in ("id: 4", "event: succeeded", 'data: {"status": "succeeded"}', "")][-1]
    assert final is not None and final.final


def test_backoff_honours_retry_after_and_caps_its_waits() -> None:
    backoff = Backoff(attempts=5, base_s=0.5, max_s=4.0)
    assert backoff.delay_s(1, 2.5) == 2.5
    assert backoff.delay_s(1, 99.0) == 4.0
    rng = random.Random(7)
    waits = [backoff.delay_s(n, None, rng) for n in range(1, 8)]
    assert all(0 <= w <= min(4.0, 0.5 * 2 ** (n - 1)) for n, w in zip(range(1, 8), waits, strict=True))


def test_a_spent_budget_is_not_retried_but_a_rate_limit_is() -> None:
    assert retried(429, "rate_limited") and retried(503, "redis_unavailable") and retried(502, "http_502")
    assert not retried(429, "budget_exhausted") and not retried(422, "invalid_request")


def test_errors_are_typed_by_status_and_code() -> None:
    body = {"error": {"code": "budget_exhausted", "message": "spent"}}
    error = error_of(429, body, "3600")
    assert isinstance(error, BudgetExhausted) and isinstance(error, RateLimited)
    assert (error.status, error.code, error.message, error.retry_after_s) == (
        429,
        "budget_exhausted",
        "spent",
        3600.0,
    )
    assert isinstance(error_of(404, {"error": {"code": "not_found", "message": "x"}}, None), NotFound)
    assert isinstance(error_of(503, "<html>", None), Unavailable)


def test_a_failed_tasks_text_raises_with_its_error() -> None:
    task = Task.of({"status": "failed", "error": {"code": "model_error", "message": "boom"}}, "t1")
    try:
        _ = task.text
    except TaskFailed as failed:
        assert "model_error" in str(failed) and failed.task.id == "t1"
    else:
        raise AssertionError("no TaskFailed")
