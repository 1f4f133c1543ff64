"""When to flush the batch being gathered: a pure function of counts, times and measured costs.

Two modes share one function:

- **window** (``max_in_flight`` None): flush when ``max_size`` requests are waiting or
  ``window_s`` after the batch's first request. A fixed window trades latency for batch
  size at every load level: even a lone request waits the whole window.
- **adaptive** (``max_in_flight`` set): continuous batching that charges a call its fixed
  cost. While all ``max_in_flight`` batches run, requests gather until one finishes (the
  consumer re-decides then) or the batch is full; ``safety_s`` bounds that wait should a
  batch's end be missed. While a slot is free, the batch waits only while waiting pays, by
  the rent-or-buy rule of online batching (the "TCP acknowledgement problem"): it leaves
  once the time its requests have spent waiting, summed, reaches what one more call would
  cost them. That cost is the call's fixed CPU cost on the worker (measured,
  ``batching.call_costs``) times how much a second of work delays everyone else when the
  CPU is ``busy`` (``busy / (1 - busy)``, the queueing delay of an M/M/1 server), and
  unbounded once the CPU is saturated (``SATURATED``): on an idle machine a call costs
  nobody anything and a lone request leaves at once; on a saturated one (a fast model, a
  closed loop) requests gather into full batches, as in window mode; and no request ever
  waits longer than ``window_s``, so adaptive never waits longer than the window would.
  Rent-or-buy guards against the worst case; arrivals are not adversarial, so a batch waits
  at all only if at least one newcomer per pending request is expected within that cost
  (``arrival_rate * cost >= pending``): a lone client's next request comes only after its
  answer, so its requests leave at once.
  A slow model's call slots bind long before the CPU does, so there the slot rule decides.
  And where the model's quota binds (calls queue for their turns), a batch waits for the
  next turn while a slot is free: leaving sooner would not start its call any sooner, and a
  call is the scarce thing (``turn_at``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: CPU share from which the CPU counts as saturated: a call then costs more than any wait
#: (in a closed loop every request's latency is clients / throughput, and throughput is what
#: the CPU per request allows: full batches), so a batch fills up to its size or its window.
#: A closed loop on a 2-core machine reads 0.96-0.99 (the load generator idles at times):
#: at 0.95 the reading straddled the line and batches came out a tenth smaller.
SATURATED = 0.9


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
class CallPressure:
    """What one more model call costs right now, as measured by the worker (adaptive mode)."""

    #: The worker's CPU seconds per call beyond its items' own (``batching.call_costs``).
    fixed_cost_s: float = 0.0
    #: Share of the CPU the worker runs on in use lately, 0 to 1.
    busy: float = 0.0
    #: Requests arriving per second lately (``ArrivalRate``).
    arrival_rate: float = 0.0
    #: When (the caller's clock) the model's quota lets the next call start: later than now
    #: while calls queue for their turns (``batching.call_pacer``).
    turn_at: float = -math.inf

    def cost_s(self) -> float:
        """Seconds of waiting one more call inflicts, to be weighed against waiting longer
        (infinite on a saturated CPU)."""
        busy = max(self.busy, 0.0)
        if self.fixed_cost_s <= 0.0:
            return 0.0
        if busy >= SATURATED:
            return math.inf
        return self.fixed_cost_s * busy / (1.0 - busy)


IDLE = CallPressure()


@dataclass(frozen=True)
class FlushNow:
    """Flush at once; ``reason`` is ``size``, ``deadline``, ``slot_free`` or ``paid``."""

    reason: str


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do before ``deadline`` (same clock as ``now``) unless more arrive or a slot frees."""

    deadline: float


def decide(
    pending: int,
    first_arrival: float | None,
    now: float,
    limits: FlushLimits,
    in_flight: int = 0,
    waited_s: float = 0.0,
    pressure: CallPressure = IDLE,
) -> FlushNow | WaitUntil | None:
    """Decide for a buffer of ``pending`` requests whose first arrived at ``first_arrival``.

    ``in_flight`` is the number of batches running, ``waited_s`` the time the pending requests
    have waited so far, summed over them, and ``pressure`` what a call costs now (all three:
    adaptive mode only). In window mode the window is measured from the batch's first
    request, so no request waits longer than ``window_s`` for its batch to leave (unlike a
    repeating timer). None: idle.
    """
    if pending <= 0 or first_arrival is None:
        return None
    if pending >= limits.max_size:
        return FlushNow("size")
    window_ends = first_arrival + limits.window_s
    if limits.max_in_flight is None:
        return FlushNow("deadline") if now >= window_ends else WaitUntil(window_ends)
    if in_flight >= limits.max_in_flight:
        slot_deadline = first_arrival + limits.safety_s
        return FlushNow("deadline") if now >= slot_deadline else WaitUntil(slot_deadline)
    if pressure.turn_at > now:
        # The quota holds the next call back anyway: the batch keeps filling until its turn,
        # so a scarce call carries what arrived meanwhile instead of leaving half empty.
        return WaitUntil(pressure.turn_at)
    cost = pressure.cost_s()
    # Waiting pays only if a newcomer is expected before the wait has cost a call (or the
    # window ends): with arrivals at rate r, one comes within that time with odds of about
    # r * time, so below one per pending request the batch would most likely wait for nothing.
    if cost <= 0.0 or pressure.arrival_rate * min(cost, limits.window_s) < pending:
        return FlushNow("slot_free")
    if waited_s >= cost:
        return FlushNow("paid")
    if now >= window_ends:
        return FlushNow("deadline")
    # With no newcomer, the summed wait grows by ``pending`` seconds per second.
    return WaitUntil(min(window_ends, now + (cost - waited_s) / pending))


class ArrivalRate:
    """Requests per second lately: a count that decays with time constant ``tau_s``.

    Each arrival adds ``1 / tau_s``; between arrivals the count decays by ``exp(-dt / tau_s)``,
    so a steady ``r`` per second converges to ``r``. Time is passed in.
    """

    def __init__(self, tau_s: float = 1.0) -> None:
        self.tau_s = tau_s
        self._rate = 0.0
        self._at: float | None = None

    def arrived(self, now: float, count: int = 1) -> None:
        """Count ``count`` arrivals at ``now``."""
        self._rate = self.at(now) + count / self.tau_s
        self._at = now

    def at(self, now: float) -> float:
        """The rate as of ``now``."""
        if self._at is None:
            return 0.0
        return self._rate * math.exp(-max(0.0, now - self._at) / self.tau_s)
