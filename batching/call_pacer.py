"""Spaces model calls to a requests-per-minute quota, so calls wait here instead of failing.

Gemini refuses calls beyond a project's RPM quota with 429 ``RESOURCE_EXHAUSTED``. Sending
into that wall wastes calls, backs items off for seconds and can exhaust their retries; a
gateway that knows the quota should queue instead. The pacer is a token bucket refilled
at ``rpm / 60`` per second holding at most one second's worth (at least one call), in which
each call takes its turn (``reserve``) and is told how long to wait: turns are handed out
in order even while the bucket is in debt, so waiting calls keep their order. Time is passed
in, so tests drive it without sleeping.
"""

from __future__ import annotations

from typing import Protocol


class Pacer(Protocol):
    """Hands out turns for model calls: ``reserve(now)`` is the wait before the call."""

    def reserve(self, now: float) -> float: ...


class CallPacer:
    """Turns for model calls at no more than ``rpm`` per minute (``rpm`` 0: no pacing)."""

    def __init__(self, rpm: int) -> None:
        if rpm < 0:
            raise ValueError("rpm must be >= 0")
        self.rpm = rpm
        self._tokens = self.burst
        self._updated: float | None = None

    @property
    def burst(self) -> float:
        """Calls that may start at once after a quiet spell: one second's worth, at least one."""
        return max(1.0, self.rpm / 60)

    def reserve(self, now: float) -> float:
        """Take the next call's turn at ``now`` (seconds); return how long it must wait first."""
        if self.rpm == 0:
            return 0.0
        rate = self.rpm / 60
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * rate)
        self._updated = max(now, self._updated or now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / rate
