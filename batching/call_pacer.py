"""Spaces model calls to per-minute quotas (calls, input tokens), so calls wait here instead of failing.

Gemini refuses calls beyond a project's RPM or TPM quota with 429 ``RESOURCE_EXHAUSTED``. Sending
into that wall wastes calls, backs items off for seconds and can exhaust their retries; a
gateway that knows the quota should queue instead. The pacer is a token bucket per quota refilled
at ``rpm / 60`` per second holding at most one second's worth (at least one call), in which
each call takes its turn (``reserve``) and is told how long to wait: turns are handed out
in order even while the bucket is in debt, so waiting calls keep their order. Time is passed
in, so tests drive it without sleeping.
"""

from __future__ import annotations

import math
from typing import Protocol


class Pacer(Protocol):
    """Hands out turns for model calls under a project's quotas.

    ``reserve`` takes a call's turn (its input tokens count against TPM) and returns the wait
    before the call, or raises ``ModelCallError`` (``model_daily_quota_exhausted``) when the
    model's day quota is spent; ``settle`` corrects the tokens by what Gemini counted;
    ``pause`` leaves a model alone for ``seconds`` after Gemini refused it for the day."""

    #: Turns taken so far, and how many of them had to wait (they only grow).
    turns_taken: int
    turns_waited: int

    def reserve(self, now: float, model: str = "", tokens: int = 0) -> float: ...

    @property
    def next_turn_at(self) -> float:
        """When (``reserve``'s clock) the last turn taken here starts: later than now while
        calls queue for their turns."""
        ...

    def settle(self, model: str, reserved: int, used: int) -> None: ...

    def pause(self, model: str, seconds: float) -> None: ...


class TokenBucket:
    """Units (calls or tokens) at ``per_minute``, holding at most one second's worth (at least
    ``least``): every take is granted, in order, with the wait that keeps the pace."""

    def __init__(self, per_minute: int, least: float = 1.0) -> None:
        self.rate = per_minute / 60
        self.burst = max(least, self.rate)
        self._tokens = self.burst
        self._updated: float | None = None

    def take(self, now: float, units: float) -> float:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = max(now, self._updated or now)
        self._tokens -= units
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self, units: float) -> None:
        self._tokens = min(self.burst, self._tokens + units)


class CallPacer:
    """Turns for one process's model calls at no more than ``rpm`` calls and ``tpm`` input
    tokens per minute (0: that quota is not paced); day quotas are the cluster's business."""

    def __init__(self, rpm: int, tpm: int = 0) -> None:
        if rpm < 0 or tpm < 0:
            raise ValueError("rpm and tpm must be >= 0")
        self.rpm, self.tpm = rpm, tpm
        self._calls = TokenBucket(rpm) if rpm else None
        self._tokens = TokenBucket(tpm) if tpm else None
        self._next_turn_at = -math.inf
        #: Turns taken, and of them waited for (read by the slot tuner from other threads).
        self.turns_taken = self.turns_waited = 0

    @property
    def next_turn_at(self) -> float:
        return self._next_turn_at

    @property
    def burst(self) -> float:
        """Calls that may start at once after a quiet spell: one second's worth, at least one."""
        return max(1.0, self.rpm / 60)

    def reserve(self, now: float, model: str = "", tokens: int = 0) -> float:
        """Take the next call's turn at ``now`` (seconds); return how long it must wait first."""
        waits = [0.0]
        if self._calls is not None:
            waits.append(self._calls.take(now, 1))
        if self._tokens is not None and tokens:
            waits.append(self._tokens.take(now, tokens))
        self._next_turn_at = max(self._next_turn_at, now + max(waits))
        self.turns_taken += 1
        self.turns_waited += max(waits) > 0
        return max(waits)

    def settle(self, model: str, reserved: int, used: int) -> None:
        if self._tokens is not None:
            self._tokens.give_back(reserved - used)

    def pause(self, model: str, seconds: float) -> None:
        """Nothing to do: ``DailyQuotaGate`` pauses this process's calls itself."""
