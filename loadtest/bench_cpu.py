"""CPU accounting from ``/proc``: CPU seconds per process group, and the machine's busy share.

A stack process is identified by (pid, start time), so a pid reused between two snapshots
is not mistaken for the process it replaced. Times are ``utime + stime`` of the process
(all its threads), in clock ticks, read by ``stack.procfs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stack.procfs import CLK_TCK, ProcStat

#: CPU ticks per process, per group: ``{group: {(pid, starttime): ticks}}``.
Snapshot = dict[str, dict[tuple[int, int], int]]


def group_snapshot(groups: Mapping[str, Iterable[int]], processes: Iterable[ProcStat]) -> Snapshot:
    """Ticks of every process whose process group (or pid) is one of a group's ids.

    Programs under supervisor lead their own process group, so a program's pid catches its
    forked workers too (nginx, gunicorn); a bare pid (supervisord itself) matches only itself.
    """
    processes = list(processes)
    snapshot: Snapshot = {}
    for name, ids in groups.items():
        wanted = set(ids)
        snapshot[name] = {p.key: p.ticks for p in processes if p.pgrp in wanted or p.pid in wanted}
    return snapshot


@dataclass(frozen=True)
class CpuDelta:
    """CPU seconds each group used between two snapshots, and processes that left meanwhile."""

    seconds: dict[str, float]
    #: CPU seconds of each group's busiest single process (one process cannot exceed one core
    #: of Python code: a GIL-bound process shows up here near the interval's length).
    busiest: dict[str, float]
    #: Processes seen in the first snapshot and gone in the second: their last interval is lost.
    vanished: int


def cpu_delta(before: Snapshot, after: Snapshot, clk_tck: int = CLK_TCK) -> CpuDelta:
    """CPU seconds per group from ``before`` to ``after``; a process new since counts whole."""
    seconds: dict[str, float] = {}
    busiest: dict[str, float] = {}
    vanished = 0
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, {}), after.get(name, {})
        per_process = [value - old.get(key, 0) for key, value in new.items()]
        vanished += len(set(old) - set(new))
        seconds[name] = sum(per_process) / clk_tck
        busiest[name] = max(per_process, default=0) / clk_tck
    return CpuDelta(seconds, busiest, vanished)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all CPUs' time that was busy between two ``machine_ticks`` readings (0..1)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total > 0 else 0.0
