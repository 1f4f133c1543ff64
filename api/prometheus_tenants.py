"""Prometheus series per tenant, with bounded cardinality: this month's usage of the top
tenants by cost by name, all the others summed as ``other``, and how far each budget is spent.

The series are this month's counts (UTC): they fall back to zero when a month begins,
which Prometheus' ``rate()`` and ``increase()`` read as a counter reset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from batchgate.budgets import BudgetBook, spent_fields, states
from batchgate.usage_store import NANO, UsageStore, month_of

#: Label of the tenants beyond the top ones.
OTHER = "other"
_COUNTS = (
    "requests",
    "failures",
    "cache_hits",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_nusd",
)


class TenantUsage(Collector):
    """Reads every tenant's month at scrape time (one round trip for all of them)."""

    def __init__(self, client: redis.Redis, prefix: str, top: int) -> None:
        self._redis = client
        self._usage = UsageStore(client, prefix)
        self._budgets = BudgetBook(client, prefix)
        self._top = max(0, top)

    def collect(self) -> Iterator[Metric]:
        month = month_of(time.time())
        tenants = self._usage.tenants(month)
        pipe = self._redis.pipeline(transaction=False)
        for tenant in tenants:
            pipe.hmget(self._usage.period_key(tenant, month), list(_COUNTS))
        counts = {
            tenant: dict(zip(_COUNTS, (int(v or 0) for v in values), strict=True))
            for tenant, values in zip(tenants, pipe.execute(), strict=True)
        }
        ranked = sorted(counts, key=lambda t: (-counts[t]["cost_nusd"], -counts[t]["requests"], t))
        shown: dict[str, dict[str, int]] = {t: counts[t] for t in ranked[: self._top]}
        rest = ranked[self._top :]
        if rest:
            shown[OTHER] = {name: sum(counts[t][name] for t in rest) for name in _COUNTS}
        requests = CounterMetricFamily(
            "batchgate_tenant_requests",
            "Finished requests this month by tenant and outcome.",
            labels=["tenant", "outcome"],
        )
        tokens = CounterMetricFamily(
            "batchgate_tenant_tokens",
            "Model tokens this month by tenant and kind.",
            labels=["tenant", "kind"],
        )
        cost = CounterMetricFamily(
            "batchgate_tenant_cost_usd", "Cost this month by tenant.", labels=["tenant"]
        )
        for tenant, c in shown.items():
            requests.add_metric([tenant, "failed"], c["failures"])
            requests.add_metric([tenant, "cached"], c["cache_hits"])
            requests.add_metric([tenant, "all"], c["requests"])
            for kind in ("input", "output", "cached_input"):
                tokens.add_metric([tenant, kind], c[f"{kind}_tokens"])
            cost.add_metric([tenant], c["cost_nusd"] / NANO)
        yield requests
        yield tokens
        yield cost
        budget = GaugeMetricFamily(
            "batchgate_tenant_budget_used_ratio",
            "How far each tenant's (or key's) monthly budget is spent; warn from 0.8.",
            labels=["tenant", "key"],
        )
        for tenant in [t for t in self._budgets.tenants() if t in shown][: self._top]:
            limits = self._budgets.limits(tenant)
            for state in states(limits, self._usage.month(tenant, spent_fields(limits))) if limits else []:
                budget.add_metric([tenant, state.limit.key or ""], min(state.share, 1e9))
        yield budget
