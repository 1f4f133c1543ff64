"""Refuse a submission that would take its tenant (or its key) past a monthly budget."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from api.errors import ApiError
from api.schemas import TaskRequest
from api.services import Services
from batchgate.budgets import Limit, spent_fields, states
from batchgate.usage_store import next_month_at
from batching.tokens import estimate_tokens


def refuse_over_budget(svc: Services, tenant: str, owner: str, task: TaskRequest) -> None:
    """``429 budget_exhausted`` (with ``Retry-After`` until the budget renews, the first of
    next month UTC) when a limit of the tenant or of this key would be exceeded by the
    task's estimated input tokens. A tenant without budgets costs no Redis round trip."""
    limits = [limit for limit in svc.budgets.limits(tenant) if limit.key is None or limit.key == owner]
    if not limits:
        return
    estimate = estimate_tokens(task.prompt) + (estimate_tokens(str(task.context)) if task.context else 0)
    now = time.time()
    for state in states(limits, svc.usage.month(tenant, spent_fields(limits), now)):
        if state.would_exceed(estimate):
            renews = next_month_at(now)
            whose = "this key's" if state.limit.key is not None else f"tenant {tenant!r}'s"
            raise ApiError(
                429,
                "budget_exhausted",
                f"{whose} monthly budget is spent ({_spent(state.used_tokens, state.used_usd, state.limit)}); "
                f"it renews at {datetime.fromtimestamp(renews, UTC).isoformat()}",
                headers={"Retry-After": str(max(1, int(renews - now)))},
            )


def _spent(tokens: int, usd: float, limit: Limit) -> str:
    parts = []
    if limit.tokens is not None:
        parts.append(f"{tokens} of {limit.tokens} tokens")
    if limit.usd is not None:
        parts.append(f"${usd:.4f} of ${limit.usd:.2f}")
    return ", ".join(parts)
