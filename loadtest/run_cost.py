"""What a load run cost: the target tenant's usage before and after, read with batchgate's own
Python client (``GET /api/v1/usage``), so the report says what the load spent, not only how
fast it went.

The difference counts everything the load's tenant did over the run: another client of the
same tenant, meanwhile, would be counted too (the report says so). A task is counted when it
finishes, so the last reading waits for the tasks Locust left in flight (until two readings a
second apart agree, at most ``SETTLE_LIMIT_S``). A target that cannot say (no usage endpoint,
no key, an answer of another shape) leaves the figure out rather than failing the run.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from batchgate_client import Backoff, BatchgateError, Client, UsageTotals

#: A reading is not worth holding the report for long: a few quick tries.
READ_BACKOFF = Backoff(attempts=3, base_s=0.25, max_s=2.0)
#: Longest wait for the tasks still in flight when Locust stops to be counted.
SETTLE_LIMIT_S = 15.0
#: The usage a run adds up, from the difference of two readings.
COUNTS = ("requests", "failures", "cache_hits", "input_tokens", "cached_input_tokens", "output_tokens")


@dataclass(frozen=True)
class UsageReader:
    """Reads the tenant's usage since the run's first UTC day."""

    host: str
    api_key: str
    ca_bundle: str = ""
    since: date = field(default_factory=lambda: datetime.now(UTC).date())

    def read(self) -> UsageTotals | None:
        """The tenant's totals since ``since``; None when the target does not say."""
        verify: ssl.SSLContext | bool = True
        if self.ca_bundle:
            verify = ssl.create_default_context(cafile=self.ca_bundle)
        try:
            with Client(
                self.host, self.api_key, timeout_s=10.0, backoff=READ_BACKOFF, verify=verify
            ) as client:
                return client.usage(
                    from_=self.since.isoformat(), to=datetime.now(UTC).date().isoformat()
                ).totals
        except (BatchgateError, OSError, ValueError, TypeError, AttributeError, KeyError):
            return None  # a report without the cost beats no report

    def settled(
        self,
        limit_s: float = SETTLE_LIMIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> UsageTotals | None:
        """The totals once they stop moving: the tasks in flight at the end are counted."""
        deadline = clock() + limit_s
        last = self.read()
        while last is not None and clock() < deadline:
            sleep(1.0)
            now = self.read()
            if now == last:
                break
            last = now
        return last


def run_cost(before: UsageTotals | None, after: UsageTotals | None) -> dict[str, Any] | None:
    """The usage and cost between two readings, with the cost per 1,000 requests and the
    share of input served from Gemini's cache; None unless both readings were taken."""
    if before is None or after is None:
        return None
    spent: dict[str, Any] = {name: getattr(after, name) - getattr(before, name) for name in COUNTS}
    spent["model_calls"] = round(after.model_calls - before.model_calls, 3)
    spent["cost_usd"] = round(after.cost_usd - before.cost_usd, 9)
    requests = spent["requests"]
    spent["cost_usd_per_1k_requests"] = round(1000 * spent["cost_usd"] / requests, 6) if requests else None
    inputs = spent["input_tokens"]
    spent["cached_input_share"] = round(spent["cached_input_tokens"] / inputs, 4) if inputs else None
    spent["note"] = "the load's tenant over the run: any other client of that tenant is counted too"
    return spent


def cost_line(spent: dict[str, Any] | None) -> str:
    """One line for the summary."""
    if spent is None:
        return "cost: not known (the target did not answer GET /api/v1/usage)"
    per_1k = spent["cost_usd_per_1k_requests"]
    cached = spent["cached_input_share"]
    return (
        f"cost: {spent['requests']} requests, {spent['input_tokens']} input tokens"
        f" ({'n/a' if cached is None else f'{100 * cached:.0f} %'} cached), {spent['output_tokens']} output,"
        f" {spent['model_calls']:g} model calls: ${spent['cost_usd']:.6f}"
        f" (${'n/a' if per_1k is None else f'{per_1k:.4f}'} per 1,000 requests)"
    )
