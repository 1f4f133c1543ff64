"""What the API answers, as typed objects; the raw JSON stays at hand in ``raw``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed"})


@dataclass(frozen=True)
class Usage:
    """A task's tokens and cost; ``input_tokens`` includes ``cached_input_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    pricing: str = "standard"

    @classmethod
    def of(cls, body: dict[str, Any] | None) -> Usage:
        body = body or {}
        return cls(
            input_tokens=int(body.get("input_tokens", 0)),
            output_tokens=int(body.get("output_tokens", 0)),
            cached_input_tokens=int(body.get("cached_input_tokens", 0)),
            cost_usd=float(body.get("cost_usd", 0.0)),
            pricing=str(body.get("pricing", "standard")),
        )


@dataclass(frozen=True)
class TaskResult:
    """A finished task's answer."""

    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Task:
    """A task as the API shows it: ``status`` queued, running, succeeded or failed."""

    id: str
    status: str
    result: TaskResult | None = None
    error: dict[str, Any] | None = None
    cached: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def text(self) -> str:
        """The answer's text; raises ``TaskFailed`` for a failed task, ``ValueError`` before it ends."""
        if self.status == "failed":
            raise TaskFailed(self)
        if self.result is None:
            raise ValueError(f"task {self.id} is {self.status}, not finished")
        return self.result.text

    @classmethod
    def of(cls, body: dict[str, Any], task_id: str | None = None) -> Task:
        result = body.get("result")
        return cls(
            id=str(body.get("id") or body.get("task_id") or task_id or ""),
            status=str(body.get("status", "")),
            result=TaskResult(
                text=str(result.get("text") or ""),
                model=str(result.get("model") or ""),
                usage=Usage.of(result.get("usage")),
                finish_reason=result.get("finish_reason"),
                tool_calls=tuple(result.get("tool_calls") or ()),
            )
            if isinstance(result, dict)
            else None,
            error=body.get("error"),
            cached=bool(body.get("cached", False)),
            raw=body,
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event of a task: ``queued``, ``running``, ``delta``, ``succeeded``, ``failed``."""

    id: int
    event: str
    data: dict[str, Any]

    @property
    def final(self) -> bool:
        return self.event in TERMINAL


@dataclass(frozen=True)
class UsageTotals:
    """Counts of a span (or of one group of it); ``model_calls`` is fractional because a
    packed call is shared among its items, and ``input_tokens`` includes the cached ones."""

    requests: int = 0
    model_calls: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_hits: int = 0
    failures: int = 0
    cost_usd: float = 0.0
    # Not compared: the same counts are equal however the server's JSON around them differs.
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, body: dict[str, Any] | None) -> UsageTotals:
        """Read totals; a count the server does not send is 0 (an older server sends fewer)."""
        body = body or {}
        return cls(
            requests=int(body.get("requests") or 0),
            model_calls=float(body.get("model_calls") or 0.0),
            input_tokens=int(body.get("input_tokens") or 0),
            output_tokens=int(body.get("output_tokens") or 0),
            cached_input_tokens=int(body.get("cached_input_tokens") or 0),
            cache_hits=int(body.get("cache_hits") or 0),
            failures=int(body.get("failures") or 0),
            cost_usd=float(body.get("cost_usd") or 0.0),
            raw=body,
        )


@dataclass(frozen=True)
class UsageGroup:
    """One row of a grouped report: ``name`` is the day, key or model the totals are of."""

    name: str
    totals: UsageTotals


@dataclass(frozen=True)
class Budget:
    """A monthly limit and this month's use of it; ``key`` None is the tenant's own limit,
    ``share`` None a limit of 0 (spent from the start)."""

    key: str | None = None
    tokens: int | None = None
    usd: float | None = None
    used_tokens: int = 0
    used_usd: float = 0.0
    share: float | None = 0.0
    warning: bool = False
    exhausted: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Budget:
        """Read one budget as ``BudgetState.body()`` writes it (no ``key``: the tenant's own)."""
        tokens, usd, share = body.get("tokens"), body.get("usd"), body.get("share")
        return cls(
            key=body.get("key"),
            tokens=int(tokens) if tokens is not None else None,
            usd=float(usd) if usd is not None else None,
            used_tokens=int(body.get("used_tokens") or 0),
            used_usd=float(body.get("used_usd") or 0.0),
            share=float(share) if share is not None else None,
            warning=bool(body.get("warning", False)),
            exhausted=bool(body.get("exhausted", False)),
            raw=body,
        )


@dataclass(frozen=True)
class UsageReport:
    """The tenant's usage from ``from_`` to ``to`` (UTC days, both included), its groups
    when ``group_by`` was asked (sorted by name), and its budgets as spent this month."""

    tenant: str
    from_: str
    to: str
    totals: UsageTotals
    group_by: str | None = None
    groups: tuple[UsageGroup, ...] = ()
    budgets: tuple[Budget, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def group(self, name: str) -> UsageTotals:
        """One group's totals (zero if the span has nothing of it)."""
        return next((g.totals for g in self.groups if g.name == name), UsageTotals())

    @classmethod
    def of(cls, body: dict[str, Any]) -> UsageReport:
        """Read a ``GET /api/v1/usage`` body; the whole of it stays in ``raw``."""
        group_by = body.get("group_by")
        return cls(
            tenant=str(body.get("tenant") or ""),
            from_=str(body.get("from") or ""),
            to=str(body.get("to") or ""),
            totals=UsageTotals.of(body.get("totals")),
            group_by=group_by,
            # Each row names its group under the ``group_by`` key: {"day": "2026-12-01", ...}.
            groups=tuple(
                UsageGroup(str(row.get(group_by) or ""), UsageTotals.of(row))
                for row in body.get("groups") or ()
            ),
            budgets=tuple(Budget.of(b) for b in body.get("budgets") or ()),
            raw=body,
        )


class BatchgateError(Exception):
    """An error the API answered (``{"error": {"code", "message"}}``) or a transport failure."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after_s = status, code, message, retry_after_s


class RateLimited(BatchgateError):
    """429: over a rate, too many tasks in flight, or a budget spent (``code`` says which)."""


class BudgetExhausted(RateLimited):
    """429 ``budget_exhausted``: the tenant's or key's monthly budget is spent until it renews."""


class NotFound(BatchgateError):
    """404: no such task (or not this key's)."""


class Unauthorized(BatchgateError):
    """401: no key, or a key the API does not know."""


class Unavailable(BatchgateError):
    """502/503/504 or a connection that failed, after every retry."""


class TaskFailed(Exception):
    """A task ended ``failed``: ``task.error`` says why."""

    def __init__(self, task: Task) -> None:
        error = task.error or {}
        super().__init__(f"task {task.id} failed: {error.get('code')}: {error.get('message')}")
        self.task = task


def error_of(status: int, body: Any, retry_after: str | None) -> BatchgateError:
    """The typed error of an error answer."""
    error = body.get("error") if isinstance(body, dict) else None
    code = str((error or {}).get("code") or f"http_{status}")
    message = str((error or {}).get("message") or body)
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    kind: type[BatchgateError] = BatchgateError
    if status == 429:
        kind = BudgetExhausted if code == "budget_exhausted" else RateLimited
    elif status == 404:
        kind = NotFound
    elif status == 401:
        kind = Unauthorized
    elif status in (502, 503, 504):
        kind = Unavailable
    return kind(status, code, message, wait)
