"""The client's pure parts: events read from lines, backoff, typed errors, usage read into
its types (and the calls asking for it, against a mock transport)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import fields
from typing import Any

import httpx
from batchgate_client import (
    AsyncClient,
    Backoff,
    Budget,
    BudgetExhausted,
    Client,
    NotFound,
    RateLimited,
    Task,
    TaskFailed,
    Unavailable,
    UsageReport,
    UsageTotals,
)
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


def _totals(requests: int, cost_nusd: int) -> dict[str, Any]:
    """A totals object as ``batchgate.usage_store.shown`` writes it."""
    return {
        "requests": requests,
        "failures": 1,
        "cache_hits": 2,
        "input_tokens": 300,
        "output_tokens": 40,
        "cached_input_tokens": 100,
        "model_calls": 0.333,
        "cost_usd": cost_nusd / 1_000_000_000,
    }


#: ``GET /api/v1/usage?group_by=model`` as ``api/usage_view.py`` answers it, with a tenant
#: budget (its ``key`` left out), a key's budget of 0 tokens (an infinite share: null).
USAGE_BODY: dict[str, Any] = {
    "tenant": "acme",
    "from": "2026-12-01",
    "to": "2026-12-04",
    "group_by": "model",
    "totals": _totals(5, 37_088_000),
    "groups": [
        {"model": "gemini-2.5-flash", **_totals(3, 30_000_000)},
        {"model": "gemini-2.5-pro", **_totals(2, 7_088_000)},
    ],
    "budgets": [
        {
            "tokens": 20000,
            "usd": None,
            "used_tokens": 17000,
            "used_usd": 0.037088,
            "share": 0.85,
            "warning": True,
            "exhausted": False,
        },
        {
            "key": "3f9a",
            "tokens": 0,
            "usd": 5.0,
            "used_tokens": 0,
            "used_usd": 0.0,
            "share": None,
            "warning": True,
            "exhausted": True,
        },
    ],
    "generated_at": 1796342400.5,
}


def test_a_usage_body_is_read_into_its_types() -> None:
    report = UsageReport.of(USAGE_BODY)
    assert (report.tenant, report.from_, report.to, report.group_by) == (
        "acme",
        "2026-12-01",
        "2026-12-04",
        "model",
    )
    assert report.totals == UsageTotals(
        requests=5,
        model_calls=0.333,
        input_tokens=300,
        output_tokens=40,
        cached_input_tokens=100,
        cache_hits=2,
        failures=1,
        cost_usd=0.037088,
    )
    assert [(g.name, g.totals.requests) for g in report.groups] == [
        ("gemini-2.5-flash", 3),
        ("gemini-2.5-pro", 2),
    ]
    assert report.group("gemini-2.5-pro").cost_usd == 0.007088
    assert report.group("gemini-2.0-flash") == UsageTotals()
    assert report.budgets == (
        Budget(None, 20000, None, 17000, 0.037088, 0.85, warning=True, exhausted=False),
        Budget("3f9a", 0, 5.0, 0, 0.0, None, warning=True, exhausted=True),
    )
    assert report.raw["generated_at"] == 1796342400.5 and report.budgets[1].raw["key"] == "3f9a"


def test_a_usage_body_without_groups_or_budgets_reads_as_empty() -> None:
    report = UsageReport.of({"tenant": "t", "from": "2026-12-01", "to": "2026-12-01", "totals": {}})
    assert report.group_by is None and report.groups == () and report.budgets == ()
    assert report.totals == UsageTotals() and isinstance(report.totals.cost_usd, float)


def test_the_servers_own_shapes_are_read_alike() -> None:
    """Guards the hand-built body above against the server's field names drifting."""
    from batchgate.budgets import BudgetState, Limit
    from batchgate.usage_store import COUNTS, shown

    counts = dict(zip(COUNTS, (7, 1, 2, 2500, 300, 40, 100, 37_088_000), strict=True))
    totals = UsageTotals.of(shown(counts))
    assert totals == UsageTotals(7, 2.5, 300, 40, 100, 2, 1, 0.037088)
    assert totals.raw.keys() <= {f.name for f in fields(UsageTotals)}
    state = BudgetState(Limit(key="3f9a", tokens=1000, usd=None), used_tokens=900, used_usd=0.5)
    budget = Budget.of(state.body())
    assert budget == Budget("3f9a", 1000, None, 900, 0.5, 0.9, warning=True, exhausted=False)
    assert budget.raw.keys() <= {f.name for f in fields(Budget)}


def _answering(body: dict[str, Any], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def test_both_clients_ask_for_usage_and_budgets_in_one_get_each() -> None:
    seen: list[httpx.Request] = []
    with Client("http://bg", "k", transport=_answering(USAGE_BODY, seen)) as client:
        assert client.usage("2026-12-01", "2026-12-04", group_by="model") == UsageReport.of(USAGE_BODY)
        assert client.budgets() == UsageReport.of(USAGE_BODY).budgets

    async def main() -> tuple[UsageReport, tuple[Budget, ...]]:
        async with AsyncClient("http://bg", "k", transport=_answering(USAGE_BODY, seen)) as client:
            return await client.usage(group_by="day"), await client.budgets()

    report, budgets = asyncio.run(main())
    assert report.groups[0].name == "gemini-2.5-flash" and budgets[1].exhausted
    assert [(r.method, r.url.path, dict(r.url.params)) for r in seen] == [
        ("GET", "/api/v1/usage", {"from": "2026-12-01", "to": "2026-12-04", "group_by": "model"}),
        ("GET", "/api/v1/usage", {}),
        ("GET", "/api/v1/usage", {"group_by": "day"}),
        ("GET", "/api/v1/usage", {}),
    ]
