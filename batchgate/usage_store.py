"""What each tenant used, per day and per month, with a split by API key and by model.

A task's usage is counted once, by the same script that writes its outcome
(``taskstore_scripts.FINISH``; a redelivered task whose outcome is already written counts
nothing), and a cache hit by the script that records it. Each count goes three times into
the tenant's day hash and three times into its month hash: the total, ``key:<owner>:<count>``
and ``model:<model>:<count>``. Cost is counted in integer nano-dollars, so the totals are
exactly the sum of the tasks' costs as each task shows it (rounded to the nano-dollar).
Days and months are UTC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from batchgate import keys
from batchgate.taskstore_scripts import COUNT_HIT

#: The counts kept per tenant (and per key and model within it).
COUNTS = (
    "requests",
    "failures",
    "cache_hits",
    "model_calls_milli",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cost_nusd",
)
#: Longest span one usage query may cover.
MAX_DAYS = 400
NANO = 1_000_000_000
#: How long a day's or a month's counts are kept by default (``BATCHGATE_USAGE_RETENTION_DAYS``).
RETENTION_DAYS = 400


def day_of(at: float) -> str:
    """The UTC day of a wall-clock time, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def month_of(at: float) -> str:
    """The UTC month of a wall-clock time, as ``YYYY-MM``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m")


def next_month_at(at: float) -> float:
    """When the month of ``at`` ends (UTC midnight of the next month's first day)."""
    now = datetime.fromtimestamp(at, UTC)
    first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return first.timestamp()


def nano_usd(cost_usd: float) -> int:
    """A cost as the integer nano-dollars it is counted in."""
    return round(cost_usd * NANO)


def increments(usage: Mapping[str, Any] | None, failed: bool, items_in_call: int) -> dict[str, int]:
    """What one finished task adds to its tenant's counts: its usage as its result shows it
    (``input_tokens`` includes ``cached_input_tokens``, as Gemini counts), and its share of
    the model call that answered it."""
    usage = usage or {}
    counts = {
        "requests": 1,
        "failures": int(failed),
        "model_calls_milli": round(1000 / max(items_in_call, 1)) if usage else 0,
        "input_tokens": int(usage.get("input_tokens", 0)),
        "output_tokens": int(usage.get("output_tokens", 0)),
        "cached_input_tokens": int(usage.get("cached_input_tokens", 0)),
        "cost_nusd": nano_usd(float(usage.get("cost_usd", 0.0))),
    }
    return {name: n for name, n in counts.items() if n}


def script_args(prefix: str, counts: Mapping[str, int], model: str, at: float, retention_s: int) -> list[Any]:
    """The arguments from ARGV[8] on of the scripts that count usage (``COUNT_USAGE`` in
    ``batchgate.taskstore_scripts``); ``retention_s`` 0 counts nothing."""
    if retention_s <= 0:
        return ["", "", "", 0, "", "{}", ""]
    month = month_of(at)
    return [
        keys.usage_prefix(prefix),
        day_of(at),
        month,
        retention_s,
        model,
        json.dumps(dict(counts), separators=(",", ":")),
        keys.usage_tenants(prefix, month),
    ]


def outcome_args(prefix: str, outcome: Any, failed: bool, at: float, retention_s: int) -> list[Any]:
    """``script_args`` for a finished task (a ``batchgate.taskstore.Outcome``)."""
    result = outcome.result or {}
    counts = increments(result.get("usage"), failed, outcome.timings.get("items_in_call") or 1)
    return script_args(prefix, counts, str(result.get("model") or outcome.model), at, retention_s)


@dataclass(frozen=True)
class UsageQuery:
    """A tenant's usage from ``first`` to ``last`` (UTC days, both included), grouped by
    ``group_by``: ``day``, ``key`` or ``model`` (None: totals only)."""

    tenant: str
    first: date
    last: date
    group_by: str | None = None

    def days(self) -> Iterator[date]:
        day = self.first
        while day <= self.last:
            yield day
            day += timedelta(days=1)


class UsageStore:
    """Reads the usage counts the task store's scripts keep (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str, retention_s: int = RETENTION_DAYS * 86400) -> None:
        self._redis = client
        self._prefix = prefix
        self._retention_s = retention_s
        self._count_hit = client.register_script(COUNT_HIT)

    def count_cache_hit(self, tenant: str, owner: str, model: str, at: float) -> None:
        """A request answered from the response cache: a request and a hit, no tokens, no cost."""
        if self._retention_s > 0:
            args = script_args(self._prefix, {"requests": 1, "cache_hits": 1}, model, at, self._retention_s)
            self._count_hit(keys=[], args=[tenant, owner, "", "", "", "", "", *args])

    def tenants(self, month: str) -> list[str]:
        """The tenants with usage counted in ``month`` (``YYYY-MM``)."""
        return sorted(_text(t) for t in self._redis.smembers(keys.usage_tenants(self._prefix, month)))

    def period_key(self, tenant: str, period: str) -> str:
        return keys.usage(self._prefix, tenant, period)

    def month(self, tenant: str, fields: Sequence[str], at: float | None = None) -> dict[str, int]:
        """The tenant's ``fields`` of this month's counts (UTC; a split's field is
        ``key:<owner>:<count>`` or ``model:<model>:<count>``); one read of just those fields,
        however many keys and models the month's hash holds."""
        key = keys.usage(self._prefix, tenant, month_of(time.time() if at is None else at))
        values = self._redis.hmget(key, list(fields)) if fields else []
        return {name: int(v or 0) for name, v in zip(fields, values, strict=True)}

    def query(self, q: UsageQuery) -> dict[str, Any]:
        """Totals of ``q``'s span and, if asked, its groups, each with ``cost_usd``."""
        pipe = self._redis.pipeline(transaction=False)
        days = list(q.days())
        for day in days:
            pipe.hgetall(self.period_key(q.tenant, day.isoformat()))
        totals: dict[str, int] = dict.fromkeys(COUNTS, 0)
        groups: dict[str, dict[str, int]] = {}
        for day, raw in zip(days, pipe.execute(), strict=True):
            for name, value in ((_text(k), int(v)) for k, v in raw.items()):
                if name in totals:
                    totals[name] += value
                    if q.group_by == "day":
                        _add(groups, day.isoformat(), name, value)
                elif q.group_by in ("key", "model") and name.startswith(q.group_by + ":"):
                    group, _, count = name[len(q.group_by) + 1 :].rpartition(":")
                    _add(groups, group, count, value)
        body: dict[str, Any] = {"totals": shown(totals)}
        if q.group_by is not None:
            body["groups"] = [{q.group_by: name, **shown(counts)} for name, counts in sorted(groups.items())]
        return body


def shown(counts: Mapping[str, int]) -> dict[str, Any]:
    """Counts as the usage view shows them: cost in USD, model calls as a fraction."""
    body: dict[str, Any] = {name: int(counts.get(name, 0)) for name in COUNTS}
    body["model_calls"] = round(body.pop("model_calls_milli") / 1000, 3)
    body["cost_usd"] = body.pop("cost_nusd") / NANO
    return body


def _add(groups: dict[str, dict[str, int]], group: str, name: str, value: int) -> None:
    counts = groups.setdefault(group, dict.fromkeys(COUNTS, 0))
    if name in counts:
        counts[name] += value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
