"""Processes and CPU time as ``/proc`` reports them (Linux only).

Used by the local cluster (to wait until every process it started is gone) and by the load
test and benchmark (to account CPU time per process group). Parsing is pure and tested on
literal ``stat`` text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Kernel clock ticks per second (``utime``/``stime`` unit), usually 100.
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the accounting needs (times in clock ticks)."""

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


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line; the command name may hold spaces and parentheses."""
    head, _, tail = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = tail.split()
    # ``fields[0]`` is field 3 (state) of proc(5): field N is ``fields[N - 3]``.
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        starttime=int(fields[19]),
    )


def read_processes(proc: Path = PROC) -> list[ProcStat]:
    """Every live process (zombies left out: their time is already their parent's to collect)."""
    result = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone while we looked
        if stat.state != "Z":
            result.append(stat)
    return result


def parse_machine_stat(text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from ``/proc/stat``'s first line.

    Idle and iowait are not busy; guest time is already inside user time and is not added.
    """
    line = next(line for line in text.splitlines() if line.startswith("cpu "))
    values = [int(v) for v in line.split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return total - idle, total


def machine_ticks(proc: Path = PROC) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs now."""
    return parse_machine_stat((proc / "stat").read_text())
