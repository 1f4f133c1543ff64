"""How busy the CPU a worker runs on is lately: one of the adaptive flush policy's inputs.

Two readings, the larger wins: the machine's CPU share in use (``psutil.cpu_times``, every
core), and this process's own CPU in cores (one Python process is bound to about one core
by its GIL, so near 1 it is saturated however idle the machine). Both are smoothed with an
exponential moving average so one busy tick does not swing the policy. The consumer's timer
calls ``sample`` a few times a second; ``value`` is read when a batch is decided.
"""

from __future__ import annotations

import time

import psutil

#: How often the consumer samples.
SAMPLE_EVERY_S = 0.25
#: Seconds after which a reading weighs half as much.
HALF_LIFE_S = 1.0


class CpuBusy:
    """The smoothed busy share, 0 to 1 (see the module docstring)."""

    def __init__(self, half_life_s: float = HALF_LIFE_S) -> None:
        self._half_life_s = half_life_s
        self.value = 0.0
        self._last: tuple[float, float, float, float] | None = None

    def sample(self, now: float | None = None) -> float:
        """Take a reading at ``now`` (monotonic seconds) and return the smoothed share."""
        now = time.monotonic() if now is None else now
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        total = sum(times)
        reading = (now, time.process_time(), total - idle, total)
        if self._last is not None:
            self.value = self.update(self._last, reading)
        self._last = reading
        return self.value

    def update(
        self, before: tuple[float, float, float, float], after: tuple[float, float, float, float]
    ) -> float:
        """The smoothed share from two readings ``(monotonic, process CPU, machine busy, machine total)``."""
        elapsed = after[0] - before[0]
        if elapsed <= 0:
            return self.value
        process = (after[1] - before[1]) / elapsed
        total = after[3] - before[3]
        machine = (after[2] - before[2]) / total if total > 0 else 0.0
        share = min(1.0, max(process, machine, 0.0))
        weight = 0.5 ** (elapsed / self._half_life_s)
        return weight * self.value + (1 - weight) * share
