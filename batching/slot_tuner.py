"""How many batches one worker runs at once, learned from how long its batches take.

``BATCHGATE_ADAPTIVE_SLOTS`` says how many model calls the cluster may run before new
requests wait to fill a batch. The right number is what the model serves at once without
slowing down: a model with 8 call slots queues a 9th call, while Gemini serves as many as
the quota lets through. Set too low for the latter, a closed loop's batches wait to fill
and its calls grow so long that the quota goes unused (``make quotatest``: 0.44 of it);
set too high for the former, batches leave half-full only to queue at the model.

So the setting is the floor, and each worker probes above it, as TCP probes a path's
capacity: while its batches had to wait for a slot, it raises its limit by half, measures
the batches started at the new limit, and keeps the step only if the model took at most
half the step longer for them (at least ``TOLERANCE``) than it took for batches of their
sizes before. At a model that queues extra calls, a call's time grows with the calls in
flight (Little's law: half again the calls, half again the time each); where the model has
room it does not grow. Batches of "their sizes": more slots mean smaller batches, and a
call's time is a fixed part plus a part per token generated (``a + b * tokens``, fitted to
the batches measured before the step), so a smaller batch is expected to take less time
per call and more per token; only time beyond that expectation counts against the step.
A refused step is tried again one slot at a time, and a refused slot after ``cooldown_s``.
A new floor (a worker came or went) shares the limit learned anew: a lone survivor takes up
what both ran. Should the model slow down later at a learned limit (half again the time
expected), the worker steps back. And where the quota binds (nearly every call waits for its turn),
more slots would only make smaller calls of the same number: a step is refused, and a
learned limit comes down a slot at a time until calls no longer queue for turns. Time is
passed in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

#: Batches of one limit measured before it is judged (at least the limit itself).
MIN_SAMPLES = 4
#: A probe raises the limit by this share of it (at least one slot), until a probe is refused.
STEP = 0.5
#: The least slowdown a step is refused for (below it, a machine's own noise decides).
TOLERANCE = 0.05
#: A refused one-slot probe is retried after this long.
COOLDOWN_S = 30.0
#: At a learned limit, batches this many times slower than expected step back.
SLOWDOWN = 1.5
#: Batches the expected time is fitted to (the latest).
FIT_SAMPLES = 256
#: The quota binds when at least this share of the calls started waited for their turn.
QUOTA_BOUND = 0.9


@dataclass
class _Epoch:
    """Batches started at one limit: (seconds, work) each."""

    limit: int
    batches: list[tuple[float, int]] = field(default_factory=list)
    slot_bound: bool = False
    #: The quota's turns (taken, waited for) when the epoch began and as last seen.
    turns_from: tuple[int, int] | None = None
    turns_to: tuple[int, int] | None = None

    @property
    def quota_bound(self) -> bool:
        if self.turns_from is None or self.turns_to is None:
            return False
        taken, waited = (b - a for a, b in zip(self.turns_from, self.turns_to, strict=True))
        return taken > 0 and waited >= QUOTA_BOUND * taken


class _CallTime:
    """A call's time as a fixed part plus a part per unit of work, least squares over recent batches."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque(maxlen=FIT_SAMPLES)

    def slowdown(self, batches: list[tuple[float, int]]) -> float:
        """How many times longer ``batches`` took than batches of their sizes did before."""
        if not self.samples:
            return 1.0
        n = len(self.samples)
        mean_w = sum(w for _, w in self.samples) / n
        mean_s = sum(s for s, _ in self.samples) / n
        var_w = sum((w - mean_w) ** 2 for _, w in self.samples)
        slope = sum((w - mean_w) * (s - mean_s) for s, w in self.samples) / var_w if var_w else 0.0
        if not var_w or slope <= 0.0 or mean_s - slope * mean_w < 0.0:
            # One size only, or no sensible fit: time in proportion to work.
            slope, fixed = mean_s / mean_w, 0.0
        else:
            fixed = mean_s - slope * mean_w
        expected = sum(fixed + slope * w for _, w in batches)
        return sum(s for s, _ in batches) / expected if expected > 0 else 1.0


class SlotTuner:
    """One worker's learned limit on batches in flight, at least its share of the configured slots."""

    def __init__(
        self, step: float = STEP, cooldown_s: float = COOLDOWN_S, min_samples: int = MIN_SAMPLES
    ) -> None:
        self._step = step
        self._cooldown_s = cooldown_s
        self._min_samples = min_samples
        #: The learned limit (0: none yet, the floor applies).
        self._learned = 0
        #: Limits accepted so far, lowest first.
        self._accepted: list[int] = []
        #: The limit a probe started from, while a probe runs.
        self._probe_from: int | None = None
        #: Once a step was refused, probes go one slot at a time.
        self._fine = False
        self._floor = 0
        self._epoch = _Epoch(limit=0)
        self._retry_at = -math.inf
        self._call_time = _CallTime()

    def limit(self, floor: int, cap: int | None) -> int:
        """The batches to run at once now: the learned limit, never below ``floor`` nor above ``cap``."""
        limit = max(floor, self._learned)
        return max(1, min(limit, cap)) if cap is not None else limit

    def waited_for_slot(self) -> None:
        """A batch had to wait because every slot was taken: more slots might have served it."""
        self._epoch.slot_bound = True

    def turns(self, taken: int, waited: int) -> None:
        """The quota's turns this worker took so far, and how many of them it waited for
        (counters that only grow): where most calls wait for their turns, the quota binds,
        and more calls at once would only make each carry fewer requests."""
        if self._epoch.turns_from is None:
            self._epoch.turns_from = (taken, waited)
        self._epoch.turns_to = (taken, waited)

    def finished(
        self, now: float, limit: int, seconds: float, work: int, floor: int, cap: int | None
    ) -> None:
        """A batch started while ``limit`` batches were allowed took the model ``seconds`` for
        ``work`` units (tokens generated, or items)."""
        if floor != self._floor:
            self._start_afresh(floor)
        current = self.limit(floor, cap)
        if self._epoch.limit != current:
            self._epoch = _Epoch(limit=current, turns_from=self._epoch.turns_to)
        if limit != current:
            return  # started under an earlier limit: it says nothing about this one
        self._epoch.batches.append((seconds, max(work, 1)))
        if len(self._epoch.batches) < max(self._min_samples, current):
            return
        epoch, self._epoch = self._epoch, _Epoch(limit=current, turns_from=self._epoch.turns_to)
        if self._probe_from is not None:
            if not self._kept(now, epoch):
                return
        elif self._accepted and current > floor and self._call_time.slowdown(epoch.batches) > SLOWDOWN:
            self._accepted.pop()  # the model slowed down at the learned limit: step back
            self._learned = self._accepted[-1] if self._accepted else 0
            return
        self._call_time.samples.extend(epoch.batches)
        if epoch.quota_bound:
            if current > floor:  # more slots than the quota lets run: one fewer, fuller calls
                self._learned = current - 1
                self._accepted = [n for n in self._accepted if n < current - 1] + [current - 1]
            return
        if epoch.slot_bound and now >= self._retry_at and (cap is None or current < cap):
            self._probe_from = current
            raised = current + (1 if self._fine else max(1, math.ceil(current * self._step)))
            self._learned = raised if cap is None else min(raised, cap)

    def _kept(self, now: float, probe: _Epoch) -> bool:
        """Keep the probed limit if the model took at most half the step longer than expected
        (True: kept)."""
        assert self._probe_from is not None
        before, self._probe_from = self._probe_from, None
        allowed = 1.0 + max(TOLERANCE, 0.5 * (probe.limit / before - 1.0))
        if not probe.quota_bound and self._call_time.slowdown(probe.batches) <= allowed:
            self._accepted.append(probe.limit)
            return True
        self._learned = before if self._accepted else 0
        if probe.limit - before > 1:
            self._fine = True  # near the model's capacity: close in one slot at a time
        else:
            self._retry_at = now + self._cooldown_s
        return False

    def _start_afresh(self, floor: int) -> None:
        """A worker came or went: the cluster's learned limit is kept, shared anew (a lone
        survivor takes up what both ran), and probing starts afresh from there."""
        if self._floor and self._learned:
            self._learned = math.ceil(self._learned * floor / self._floor)
        self._accepted = [self._learned] if self._learned else []
        self._floor, self._probe_from, self._fine, self._retry_at = floor, None, False, -math.inf
