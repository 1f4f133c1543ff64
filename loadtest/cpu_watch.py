"""Which share of the machine's CPU this test's own processes used during a step, and which the rest.

``make loadtest`` runs on shared machines: a step during which something else was busy
understates the stack, and the report says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from stack import procfs

#: A step during which processes outside this test used more than this share of the machine
#: (all cores) ran on a contended machine: its numbers understate the stack.
CONTENDED_PERCENT = 20.0


class CpuWatch:
    """Once a second, split the machine's CPU into this test's processes and everything else.

    "Ours" is every descendant of this driver: Locust, and the stack when it was started here
    (supervisord and its programs). "Others" is the machine's busy time minus ours: other
    users of a shared machine, plus a Redis or stack that was already running.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        #: (wall time, ours %, others %, others' % by command name), one per interval.
        self.samples: list[tuple[float, float, float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")
        self._cpus = os.cpu_count() or 1

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        previous_busy, previous = procfs.machine_ticks()[0], _processes()
        while not self._stop.wait(self.interval_s):
            busy, current = procfs.machine_ticks()[0], _processes()
            ours = _descendants(current, os.getpid())
            capacity = self.interval_s * self._tick * self._cpus / 100  # ticks per percent of the machine
            mine = 0
            named: dict[str, float] = {}
            for pid, (_, ticks, name) in current.items():
                used = ticks - previous[pid][1] if pid in previous else ticks
                if pid in ours:
                    mine += used
                elif used > 0:
                    named[name] = named.get(name, 0.0) + used / capacity
            others = max(0.0, busy - previous_busy - mine) / capacity
            self.samples.append((time.time(), round(mine / capacity, 1), round(others, 1), named))
            previous_busy, previous = busy, current

    def during(self, start: float, end: float) -> dict[str, Any]:
        """Mean CPU (percent of the whole machine) of ours and others between two wall times,
        and the three other programs that used most."""
        window = [s for s in self.samples if start < s[0] <= end]
        if not window:
            return {"test_cpu_percent": None, "other_cpu_percent": None, "other_top": []}
        by_name: dict[str, float] = {}
        for sample in window:
            for name, pct in sample[3].items():
                by_name[name] = by_name.get(name, 0.0) + pct / len(window)
        top = sorted(by_name.items(), key=lambda item: -item[1])[:3]
        return {
            "test_cpu_percent": round(sum(s[1] for s in window) / len(window), 1),
            "other_cpu_percent": round(sum(s[2] for s in window) / len(window), 1),
            "other_top": [{"name": name, "cpu_percent": round(pct, 1)} for name, pct in top if pct >= 0.5],
        }


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every live process: (parent pid, CPU ticks of all its threads, command name)."""
    return {p.pid: (p.ppid, p.ticks, p.comm) for p in procfs.read_processes()}


def _descendants(processes: Mapping[int, tuple[int, int, str]], root: int) -> set[int]:
    """``root`` and every process below it."""
    ours = set()
    for pid in processes:
        node = pid
        while node > 1 and node != root:
            node = processes[node][0] if node in processes else 0
        if node == root:
            ours.add(pid)
    return ours


def contention(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Which steps ran while something outside the test used a fair share of the machine."""
    others = [s.get("other_cpu_percent") for s in steps]
    contended = [s["index"] for s in steps if (s.get("other_cpu_percent") or 0) > CONTENDED_PERCENT]
    return {
        "other_cpu_percent_max": max((o for o in others if o is not None), default=None),
        "contended_steps": contended,
        "contenders": sorted(
            {top["name"] for s in steps if s["index"] in contended for top in s.get("other_top", [])}
        ),
        "note": (
            f"processes outside this test used more than {CONTENDED_PERCENT:g} % of the machine during "
            "the contended steps: their throughput and latency understate the stack"
            if contended
            else "no other process used a fair share of the machine during the steps"
        ),
    }
