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
