"""When to flush the batch being gathered: a pure function of counts and times."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlushLimits:
    """A batch is flushed when it holds ``max_size`` requests or is ``window_s`` old."""

    max_size: int
    window_s: float


@dataclass(frozen=True)
class FlushNow:
    """Flush at once; ``reason`` is ``size`` or ``deadline``."""

    reason: str


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do before ``deadline`` (same clock as ``now``) unless more arrive."""

    deadline: float


def decide(
    pending: int, first_arrival: float | None, now: float, limits: FlushLimits
) -> FlushNow | WaitUntil | None:
    """Decide for a buffer of ``pending`` requests whose first arrived at ``first_arrival``.

    The window is measured from the batch's first request, so no request waits longer
    than ``window_s`` for its batch to leave (unlike a repeating timer). None: idle.
    """
    if pending <= 0 or first_arrival is None:
        return None
    if pending >= limits.max_size:
        return FlushNow("size")
    deadline = first_arrival + limits.window_s
    if now >= deadline:
        return FlushNow("deadline")
    return WaitUntil(deadline)
