"""Processes and CPU time, read with psutil (Linux: from ``/proc``), in clock ticks.

Used by the local cluster (to wait until every process it started is gone) and by the load
test and benchmark (to account CPU time per process group).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

#: Kernel clock ticks per second (``utime``/``stime`` unit), usually 100.
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """What the accounting needs of a process (times in clock ticks)."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    utime: int
    stime: int
    starttime: int

    @property
    def ticks(self) -> int:
        """User plus system time, in clock ticks."""
        return self.utime + self.stime

    @property
    def key(self) -> tuple[int, int]:
        """Identity across snapshots: a reused pid has a later start time."""
        return (self.pid, self.starttime)


def read_processes() -> list[ProcStat]:
    """Every live process (zombies left out: their time is already their parent's to collect),
    as psutil reads ``/proc``."""
    result = []
    for process in psutil.process_iter(["pid", "name", "status", "ppid", "cpu_times", "create_time"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["cpu_times"] is None:
            continue
        try:
            pgrp = os.getpgid(info["pid"])
        except OSError:
            continue  # gone while we looked
        times = info["cpu_times"]
        result.append(
            ProcStat(
                pid=info["pid"],
                comm=info["name"] or "",
                state=str(info["status"]),
                ppid=info["ppid"] or 0,
                pgrp=pgrp,
                utime=round(times.user * CLK_TCK),
                stime=round(times.system * CLK_TCK),
                starttime=round((info["create_time"] or 0.0) * CLK_TCK),
            )
        )
    return result


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs now; idle and iowait are not busy (guest time is
    already inside user time and is not added)."""
    times = psutil.cpu_times()
    parts = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    total = sum(getattr(times, name, 0.0) for name in parts)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return round((total - idle) * CLK_TCK), round(total * CLK_TCK)
