"""A model whose daily quota ran out is left alone until the quota resets.

Gemini refuses a call over a quota with 429 ``RESOURCE_EXHAUSTED`` and a
``google.rpc.QuotaFailure`` whose violation's ``quotaId`` names the quota. A minute's quota
frees up within the minute and is retried like any 429 (after its ``RetryInfo`` delay); a
day's (``...PerDay...``) does not free up before midnight Pacific time, so retrying it only
spends calls. ``daily_quota_error`` turns such a refusal into ``model_daily_quota_exhausted``
(not retried, not split), and ``DailyQuotaGate`` wraps a model client so that, after one such
refusal, further calls to that model fail the same way at once, without reaching the model,
until the ``retryDelay`` Gemini gave has passed: one call per worker process learns it, not
one per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from batching.model_client import ModelClient
from batching.types import ModelCall, ModelCallError, ModelReply

DAILY_QUOTA_EXHAUSTED = "model_daily_quota_exhausted"
#: Where Gemini's day quotas reset.
PACIFIC = ZoneInfo("America/Los_Angeles")
#: How long a model stays paused when Gemini gave no delay with a day quota's refusal.
DEFAULT_PAUSE_S = 3600.0


def pacific_day(wall: float) -> str:
    """The Pacific date (``YYYY-MM-DD``) of epoch time ``wall``: the day a day quota counts."""
    return datetime.fromtimestamp(wall, PACIFIC).date().isoformat()


def seconds_to_pacific_midnight(wall: float) -> float:
    """Seconds from epoch time ``wall`` to the next midnight in Pacific time."""
    here = datetime.fromtimestamp(wall, PACIFIC)
    midnight = datetime.combine(here.date() + timedelta(days=1), datetime.min.time(), PACIFIC)
    return max(0.0, midnight.timestamp() - wall)


def day_quota_spent(model: str, seconds_left: float, why: str) -> ModelCallError:
    """The error of a call not made because ``model``'s day quota is spent (``why``)."""
    return ModelCallError(
        DAILY_QUOTA_EXHAUSTED,
        f"the model's daily quota ran out ({why}); not called again for {seconds_left:.0f} s",
        status=429,
        retry_after_s=seconds_left,
    )


def quota_ids(body: Any) -> list[str]:
    """The ``quotaId`` of every QuotaFailure violation in a google.rpc error body."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    found: list[str] = []
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("QuotaFailure"):
            continue
        for violation in detail.get("violations") or []:
            if isinstance(violation, dict) and isinstance(violation.get("quotaId"), str):
                found.append(violation["quotaId"])
    return found


def daily_quota_error(body: Any, retry_after_s: float | None) -> ModelCallError | None:
    """``model_daily_quota_exhausted`` when a 429's body says a day quota ran out, else None."""
    daily = [quota for quota in quota_ids(body) if "PerDay" in quota]
    if not daily:
        return None
    wait = f"; it resets in {retry_after_s:.0f} s" if retry_after_s is not None else ""
    return ModelCallError(
        DAILY_QUOTA_EXHAUSTED,
        f"the model's daily quota ran out ({', '.join(daily)}){wait}",
        status=429,
        retry_after_s=retry_after_s,
    )


class DailyQuotaGate:
    """A ``ModelClient`` that stops calling a model whose daily quota ran out, until it resets."""

    def __init__(
        self,
        client: ModelClient,
        clock: Callable[[], float] = time.monotonic,
        on_pause: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        #: Told (model, seconds) when Gemini refuses a model for the day, so other processes
        #: can leave it alone too.
        self._on_pause = on_pause
        #: Model -> when (``clock``) its daily quota is expected back.
        self._paused_until: dict[str, float] = {}

    def paused_for(self, model: str) -> float:
        """Seconds until ``model`` may be called again (0: not paused)."""
        return max(0.0, self._paused_until.get(model, 0.0) - self._clock())

    async def generate(self, call: ModelCall) -> ModelReply:
        self._check(call.model)
        return await self._watch(call.model, self._client.generate(call))

    async def generate_stream(self, call: ModelCall, on_text: Callable[[str], None]) -> ModelReply:
        self._check(call.model)
        return await self._watch(call.model, self._client.generate_stream(call, on_text))

    async def aclose(self) -> None:
        await self._client.aclose()

    def _check(self, model: str) -> None:
        left = self.paused_for(model)
        if left > 0:
            raise day_quota_spent(model, left, "Gemini said so")

    async def _watch(self, model: str, pending: Any) -> ModelReply:
        try:
            reply: ModelReply = await pending
        except ModelCallError as exc:
            if exc.code == DAILY_QUOTA_EXHAUSTED:
                pause = exc.retry_after_s if exc.retry_after_s is not None else DEFAULT_PAUSE_S
                self._paused_until[model] = self._clock() + pause
                if self._on_pause is not None:
                    self._on_pause(model, pause)
            raise
        return reply
