"""Monthly budgets per tenant, and per API key inside it, in tokens or in USD.

An operator sets them (``make budget``); the API refuses a submission that would exceed one
before it is enqueued (``429 budget_exhausted``, with when the budget renews: the first of
the next month, UTC). Every limit that applies is checked and the strictest wins: a key's
own limit cannot lift its tenant's. Tokens count input and output (cached input is part of
the input, as Gemini counts it). A budget's state is read from the month's usage counts
(``batchgate.usage_store``); the tenant's budgets themselves are kept a few seconds in the
API process, so a tenant without any costs no round trip.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from batchgate import keys
from batchgate.usage_store import NANO

#: From this share of a budget on, the usage view and the Prometheus gauge warn.
WARN_AT = 0.8
#: How long an API process trusts the budgets it read.
CACHE_S = 5.0


@dataclass(frozen=True)
class Limit:
    """One budget: ``tokens`` and/or ``usd`` a month, of a tenant or (``key``) of one key."""

    key: str | None = None
    tokens: int | None = None
    usd: float | None = None


@dataclass(frozen=True)
class BudgetState:
    """How far a limit is spent: the larger of its token and cost shares."""

    limit: Limit
    used_tokens: int
    used_usd: float

    @property
    def share(self) -> float:
        shares = [0.0]
        if self.limit.tokens is not None:
            shares.append(self.used_tokens / self.limit.tokens if self.limit.tokens else math.inf)
        if self.limit.usd is not None:
            shares.append(self.used_usd / self.limit.usd if self.limit.usd else math.inf)
        return max(shares)

    def would_exceed(self, more_tokens: int) -> bool:
        """Whether a request of about ``more_tokens`` tokens would take this limit past its end."""
        tokens, usd = self.limit.tokens, self.limit.usd
        return (tokens is not None and self.used_tokens + more_tokens > tokens) or (
            usd is not None and self.used_usd >= usd
        )

    def body(self) -> dict[str, Any]:
        return {
            **({"key": self.limit.key} if self.limit.key is not None else {}),
            "tokens": self.limit.tokens,
            "usd": self.limit.usd,
            "used_tokens": self.used_tokens,
            "used_usd": self.used_usd,
            "share": round(self.share, 4) if math.isfinite(self.share) else None,
            "warning": self.share >= WARN_AT,
            "exhausted": self.share >= 1.0,
        }


def limits_of(raw: Mapping[str, str]) -> list[Limit]:
    """The limits kept in a tenant's budget hash (``tokens``, ``usd``, ``key:<owner>:tokens``...)."""
    found: dict[str | None, dict[str, str]] = {}
    for name, value in raw.items():
        owner, _, kind = name.rpartition(":")
        found.setdefault(owner.removeprefix("key:") if owner else None, {})[kind] = value
    return [
        Limit(
            key=owner,
            tokens=int(parts["tokens"]) if "tokens" in parts else None,
            usd=float(parts["usd"]) if "usd" in parts else None,
        )
        for owner, parts in sorted(found.items(), key=lambda item: item[0] or "")
    ]


def _scope(limit: Limit) -> str:
    return f"key:{limit.key}:" if limit.key is not None else ""


def spent_fields(limits: list[Limit]) -> list[str]:
    """The month's counts ``states`` reads for ``limits`` (``UsageStore.month``'s fields)."""
    return [
        _scope(limit) + count for limit in limits for count in ("input_tokens", "output_tokens", "cost_nusd")
    ]


def states(limits: list[Limit], month: Mapping[str, int]) -> list[BudgetState]:
    """Each limit with what its tenant (or key) used this month, from the month's counts."""
    result = []
    for limit in limits:
        scope = _scope(limit)
        tokens = month.get(scope + "input_tokens", 0) + month.get(scope + "output_tokens", 0)
        result.append(BudgetState(limit, tokens, month.get(scope + "cost_nusd", 0) / NANO))
    return result


class BudgetBook:
    """The budgets of every tenant, in Redis (one hash per tenant)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._cached: dict[str, tuple[float, list[Limit]]] = {}
        self._lock = threading.Lock()

    def set(
        self, tenant: str, tokens: int | None = None, usd: float | None = None, key: str | None = None
    ) -> None:
        """Set (or with neither ``tokens`` nor ``usd``, remove) a tenant's or a key's monthly limit."""
        scope = _scope(Limit(key=key or None))
        name = keys.budget(self._prefix, tenant)
        pipe = self._redis.pipeline()
        pipe.hdel(name, scope + "tokens", scope + "usd")
        if tokens is not None:
            pipe.hset(name, scope + "tokens", str(int(tokens)))
        if usd is not None:
            pipe.hset(name, scope + "usd", repr(float(usd)))
        pipe.sadd(keys.budgeted_tenants(self._prefix), tenant)
        pipe.execute()

    def limits(self, tenant: str, now: float | None = None) -> list[Limit]:
        """The tenant's limits, as read at most ``CACHE_S`` ago."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hit = self._cached.get(tenant)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        raw = self._redis.hgetall(keys.budget(self._prefix, tenant))
        limits = limits_of({_text(k): _text(v) for k, v in raw.items()})
        with self._lock:
            self._cached[tenant] = (now, limits)
        return limits

    def tenants(self) -> list[str]:
        """Every tenant a budget was ever set for."""
        return sorted(_text(t) for t in self._redis.smembers(keys.budgeted_tenants(self._prefix)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
