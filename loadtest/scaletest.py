"""``make scaletest``: 1 vs 3 API replicas and 1 vs N worker processes, at the same offered load.

Each configuration runs on a fresh local stack (as ``make bench`` does) with the same
closed-loop client concurrency and the same simulator. By default the simulator is a fast
upstream (``FAST_UPSTREAM``), so that the stack, not the model, is what saturates: with the
Gemini-like cost model of ``make bench`` the simulator's call slots cap every configuration
at the same rate and the test would show nothing. Prints a table (throughput, p50/p95
latency, CPU per process group) and what limited each run; saves the JSON to
``loadtest/reports/scaletest-<timestamp>.json``.

Knobs (environment): ``SCALETEST_WORKERS`` (2, the N), ``SCALETEST_CLIENTS`` (256),
``SCALETEST_WARMUP_S`` (5), ``SCALETEST_MEASURE_S`` (15), ``BENCH_RUN_DIR``,
``BENCH_REPORT_DIR``; ``BATCHGATE_*`` variables are passed to the stacks (e.g.
``BATCHGATE_SIM_OVERHEAD_MS=400`` for a slower upstream).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtest.bench_config import BenchConfig
from loadtest.bench_phases import saturation
from loadtest.bench_stack import Stack, caller_overrides, stack_env
from loadtest.bench_summary import save

#: A model far faster than the stack (thousands of items/s), so the stack is the bottleneck.
FAST_UPSTREAM = {
    "BATCHGATE_SIM_OVERHEAD_MS": "100",
    "BATCHGATE_SIM_PER_INPUT_TOKEN_MS": "0.001",
    "BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS": "0.05",
    "BATCHGATE_SIM_MAX_CONCURRENT": "32",
    "BATCHGATE_SIM_RPM": "0",
}
#: Busy share of all CPUs above which a run counts as CPU-bound.
CPU_BOUND = 0.85
#: A single process using this much of a core is saturated (Python: one core at most).
PROCESS_SATURATED = 0.75
#: Slot utilisation above which the simulator is the limit.
MODEL_BOUND = 0.9
#: Process groups shown in the table, in this order.
SHOWN = ("api", "worker", "nginx", "redis", "beat", "flower", "simulator")


def configurations(workers: int) -> list[tuple[int, int]]:
    """(API replicas, worker processes) to compare: each change alone, then both."""
    return [(1, 1), (3, 1), (1, workers), (3, workers)]


def limiting_factor(phase: Mapping[str, Any]) -> str:
    """Say, from a phase's numbers, what most likely limited its throughput."""
    cpu = phase["cpu"]
    busy = cpu["machine_busy_share"]
    utilisation = phase["sim"]["slot_utilisation"]
    top = sorted(
        ((cores, name) for name, cores in cpu["cores_by_group"].items() if name != "supervisord"),
        reverse=True,
    )[:3]
    tops = (
        ", ".join(f"{name} {cores:.2f}" for cores, name in top)
        + f", load generator {cpu['loadgen_cores']:.2f}"
    )
    saturated = [
        name
        for name, cores in cpu["busiest_process_cores_by_group"].items()
        if cores >= PROCESS_SATURATED and name != "supervisord"
    ]
    if utilisation >= MODEL_BOUND:
        return f"model-bound: simulator slots {utilisation:.0%} busy"
    if busy >= CPU_BOUND:
        return f"CPU-bound: {busy:.0%} of {cpu['cpus']} cores busy (cores: {tops})"
    if saturated:
        return f"one process at a core: {', '.join(saturated)} (cores: {tops})"
    return f"not saturated: {busy:.0%} of CPUs busy, slots {utilisation:.0%} busy (cores: {tops})"


def table(rows: list[dict[str, Any]]) -> str:
    """The side-by-side comparison as fixed-width text."""
    head = ["api", "workers", "req/s", "p50 ms", "p95 ms", "items/call", "busy %", *SHOWN, "loadgen"]
    lines = [" ".join(f"{h:>10}" for h in head)]
    for row in rows:
        cores = row["cpu"]["cores_by_group"]
        cells = [
            row["api_replicas"],
            row["worker_processes"],
            f"{row['throughput_rps']:.1f}",
            f"{row['latency_ms'].get('p50', float('nan')):.0f}",
            f"{row['latency_ms'].get('p95', float('nan')):.0f}",
            f"{row['sim']['items_per_call']:.1f}",
            f"{100 * row['cpu']['machine_busy_share']:.0f}",
            *(f"{cores.get(name, 0.0):.2f}" for name in SHOWN),
            f"{row['cpu']['loadgen_cores']:.2f}",
        ]
        lines.append(" ".join(f"{c!s:>10}" for c in cells))
    lines.append("(CPU columns: cores used by each process group during the measured window)")
    return "\n".join(lines)


def run_scaletest(environ: Mapping[str, str]) -> dict[str, Any]:
    """Run every configuration in turn; return the rows and the settings used."""
    workers = int(environ.get("SCALETEST_WORKERS", 2))
    clients = int(environ.get("SCALETEST_CLIENTS", 256))
    warmup_s = float(environ.get("SCALETEST_WARMUP_S", 5))
    measure_s = float(environ.get("SCALETEST_MEASURE_S", 15))
    run_root = Path(environ.get("BENCH_RUN_DIR", BenchConfig().run_dir))
    settings = {**FAST_UPSTREAM, **caller_overrides(environ)}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    stopping = None
    try:
        for api, procs in configurations(workers):
            name = f"api{api}-workers{procs}"
            run_dir = run_root / f"scale-{stamp}" / name
            stack = Stack(
                run_dir, stack_env(run_dir, api_replicas=api, settings=settings), worker_processes=procs
            )
            _log(f"{name}: starting")
            stack.start()
            if stopping is not None:
                stopping.join()
            try:
                phase = asyncio.run(saturation(stack, clients, warmup_s, measure_s, f"{stamp}-{name}"))
            except BaseException:
                stack.stop()
                raise
            phase.update(api_replicas=api, worker_processes=procs, limited_by=limiting_factor(phase))
            rows.append(phase)
            _log(
                f"{name}: {phase['throughput_rps']} req/s, p95 {phase['latency_ms'].get('p95')} ms; {phase['limited_by']}"
            )
            stopping = stack.stop_in_background()
    finally:
        if stopping is not None:
            stopping.join()
    return {
        "rows": rows,
        "table": table(rows).splitlines(),
        "settings": {
            "clients": clients,
            "warmup_s": warmup_s,
            "measure_s": measure_s,
            "stack_settings": settings,
            "cpus": os.cpu_count(),
            "duration_s": round(time.monotonic() - started, 1),
        },
    }


def _log(message: str) -> None:
    print(f"[scaletest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    report = run_scaletest(os.environ)
    path = save(
        report, Path(os.environ.get("BENCH_REPORT_DIR", BenchConfig().report_dir)), prefix="scaletest"
    )
    print(table(report["rows"]))
    print()
    for row in report["rows"]:
        print(f"api {row['api_replicas']} x workers {row['worker_processes']}: {row['limited_by']}")
    _log(f"report saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
