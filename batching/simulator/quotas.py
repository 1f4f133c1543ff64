"""Gemini's quotas as the simulator enforces them: requests per minute (RPM), input tokens per
minute (TPM) and requests per day (RPD), each refused the way Gemini refuses it.

Gemini answers a call over a quota with 429 ``RESOURCE_EXHAUSTED`` whose details carry a
``google.rpc.QuotaFailure`` (its violation's ``quotaId`` says which quota ran out: a minute's
or a day's) and a ``google.rpc.RetryInfo`` (``retryDelay``, e.g. ``"53s"``). Minute quotas
are sliding 60 s windows here; the day quota resets at midnight Pacific time, as Gemini's
does. Time comes in as arguments (``now`` monotonic for the windows, ``wall`` epoch seconds
for the day), so the rules are tested without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from batching.daily_quota import pacific_day, seconds_to_pacific_midnight
from batching.simulator.cost import QUOTA_WINDOW_S, QuotaWindow

QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"
#: Each quota's ``quotaId`` and ``quotaMetric`` in a QuotaFailure violation, as Gemini names them.
QUOTA_NAMES = {
    "rpm": (
        "GenerateRequestsPerMinutePerProjectPerModel",
        "generativelanguage.googleapis.com/generate_content_requests",
    ),
    "tpm": (
        "GenerateContentInputTokensPerModelPerMinute",
        "generativelanguage.googleapis.com/generate_content_input_token_count",
    ),
    "rpd": (
        "GenerateRequestsPerDayPerProjectPerModel",
        "generativelanguage.googleapis.com/generate_content_requests",
    ),
}
_WHAT = {"rpm": "requests per minute", "tpm": "input tokens per minute", "rpd": "requests per day"}


@dataclass(frozen=True)
class QuotaRefusal:
    """A call refused by one quota: which (``rpm``, ``tpm``, ``rpd``), its limit, and the whole
    seconds until it could pass."""

    quota: str
    limit: int
    retry_delay_s: int

    def message(self) -> str:
        return f"Quota exceeded: {self.limit} {_WHAT[self.quota]} (simulated)."

    def detail(self, model: str) -> dict[str, Any]:
        """The ``google.rpc.QuotaFailure`` of the error body."""
        quota_id, metric = QUOTA_NAMES[self.quota]
        violation = {
            "quotaMetric": metric,
            "quotaId": quota_id,
            "quotaDimensions": {"location": "global", "model": model},
            "quotaValue": str(self.limit),
        }
        return {"@type": QUOTA_FAILURE_TYPE, "violations": [violation]}


def _whole_seconds(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


class TokenWindow:
    """Input tokens admitted over a sliding window; checked and recorded apart, so a call the
    other quotas refuse spends none."""

    def __init__(self, window_s: float = QUOTA_WINDOW_S) -> None:
        self.window_s = window_s
        self._admitted: deque[tuple[float, int]] = deque()
        self._total = 0

    def wait_s(self, now: float, tpm: int, tokens: int) -> float:
        """0.0 when ``tokens`` fit under ``tpm`` at ``now``, else the seconds until they do. A
        call larger than the whole quota passes once the window is empty (as it could on Gemini
        only at the minute's turn), so it is slowed, never stuck."""
        while self._admitted and self._admitted[0][0] <= now - self.window_s:
            self._total -= self._admitted.popleft()[1]
        if tpm <= 0 or self._total + tokens <= tpm or not self._admitted:
            return 0.0
        room, frees_at = self._total + tokens - tpm, now
        for admitted_at, spent in self._admitted:
            room -= spent
            frees_at = admitted_at + self.window_s
            if room <= 0:
                break
        return max(frees_at - now, 0.0)

    def record(self, now: float, tokens: int) -> None:
        self._admitted.append((now, tokens))
        self._total += tokens

    def clear(self) -> None:
        self._admitted.clear()
        self._total = 0


class DayCount:
    """Requests admitted on the current Pacific day."""

    def __init__(self) -> None:
        self._day: str | None = None
        self.count = 0

    def used(self, wall: float) -> int:
        day = pacific_day(wall)
        if day != self._day:
            self._day, self.count = day, 0
        return self.count

    def clear(self) -> None:
        self._day, self.count = None, 0


class Quotas:
    """The three quotas together: a call passes all of them or is refused by the first it
    breaks (the day first: no minute's wait helps then) and counts against none."""

    def __init__(self) -> None:
        self.requests = QuotaWindow()
        self.tokens = TokenWindow()
        self.day = DayCount()

    def admit(
        self, now: float, wall: float, tokens: int, *, rpm: int, tpm: int, rpd: int
    ) -> QuotaRefusal | None:
        """Admit one call of ``tokens`` input tokens, or say which quota refuses it (0 = no quota)."""
        if rpd > 0 and self.day.used(wall) >= rpd:
            return QuotaRefusal("rpd", rpd, _whole_seconds(seconds_to_pacific_midnight(wall)))
        token_wait = self.tokens.wait_s(now, tpm, tokens)
        if token_wait > 0:
            return QuotaRefusal("tpm", tpm, _whole_seconds(token_wait))
        request_wait = self.requests.admit(now, rpm)  # records the admission when it passes
        if request_wait > 0:
            return QuotaRefusal("rpm", rpm, _whole_seconds(request_wait))
        if tpm > 0:
            self.tokens.record(now, tokens)
        if rpd > 0:
            self.day.count += 1
        return None

    def clear(self) -> None:
        """Forget every admission (``POST /_sim/reset``)."""
        self.requests.clear()
        self.tokens.clear()
        self.day.clear()
