"""When to flush the batch being gathered: a pure function of counts and times.

Two modes share one function:

- **window** (``max_in_flight`` None): flush when ``max_size`` requests are waiting or
  ``window_s`` after the batch's first request. A fixed window trades latency for batch
  size at every load level: even a lone request waits the whole window.
- **adaptive** (``max_in_flight`` set; continuous batching, as LLM servers do): while
  fewer than ``max_in_flight`` batches run, flush at once — at low load a request leaves
  immediately — and otherwise keep filling until the batch is full or a running batch
  finishes (the consumer re-decides then). Under load the running batches are busy, so
  requests gather into full batches by themselves; no fixed wait is ever added. A small
  ``max_in_flight`` keeps bursts from being sent as many tiny calls. ``safety_s`` bounds
  the wait should a batch's end ever be missed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlushLimits:
    """Flush triggers; see the module docstring for the two modes."""

    max_size: int
    window_s: float
    #: Adaptive mode: batches that may run before requests wait to fill one; None = window mode.
    max_in_flight: int | None = None
    #: Adaptive mode: longest wait for a slot before flushing anyway.
    safety_s: float = 5.0


@dataclass(frozen=True)
class FlushNow:
    """Flush at once; ``reason`` is ``size``, ``deadline`` or ``slot_free``."""

    reason: str


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do before ``deadline`` (same clock as ``now``) unless more arrive or a slot frees."""

    deadline: float


def decide(
    pending: int, first_arrival: float | None, now: float, limits: FlushLimits, in_flight: int = 0
) -> FlushNow | WaitUntil | None:
    """Decide for a buffer of ``pending`` requests whose first arrived at ``first_arrival``.

    ``in_flight`` is the number of batches running (adaptive mode only). In window mode the
    window is measured from the batch's first request, so no request waits longer than
    ``window_s`` for its batch to leave (unlike a repeating timer). None: idle.
    """
    if pending <= 0 or first_arrival is None:
        return None
    if pending >= limits.max_size:
        return FlushNow("size")
    if limits.max_in_flight is not None:
        if in_flight < limits.max_in_flight:
            return FlushNow("slot_free")
        deadline = first_arrival + limits.safety_s
    else:
        deadline = first_arrival + limits.window_s
    if now >= deadline:
        return FlushNow("deadline")
    return WaitUntil(deadline)
