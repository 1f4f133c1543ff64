"""``make quotatest``: N worker processes share one RPM quota, and a lone survivor takes all of it.

Two phases on fresh local stacks with ``QUOTATEST_WORKERS`` worker processes, the Gemini-like
cost model with unlimited call slots (as Gemini: the quota binds, not the slots) and
batchgate's defaults otherwise, the simulator's quota and ``BATCHGATE_MODEL_RPM`` both at
``QUOTATEST_RPM``, and closed-loop saturation:

- ``shared``: every worker runs throughout;
- ``one_killed``: the first worker program is killed ``QUOTATEST_KILL_AFTER_S`` into the
  measurement and stays dead; the others must take its share.

Each phase reports the simulator's 429s by quota over the whole phase (warm-up included) and
its throughput against what the quota allows at the items per call made
(``rpm * items per call / 60``). A third, ``day_quota``, gives the simulator a day quota of
``QUOTATEST_RPD`` (40) calls that batchgate is not told of, and counts the calls that reach
the simulator after its first day refusal (at most one per worker) and the tasks that fail
with ``model_daily_quota_exhausted``. Knobs: ``QUOTATEST_WORKERS`` (2), ``QUOTATEST_RPM`` (300),
``QUOTATEST_CLIENTS`` (384), ``QUOTATEST_WARMUP_S`` (10), ``QUOTATEST_MEASURE_S`` (120),
``QUOTATEST_KILL_AFTER_S`` (60), ``BENCH_RUN_DIR``, ``BENCH_REPORT_DIR``. Saves the JSON to
``loadtest/reports/quotatest-<timestamp>.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import urllib.request
from typing import Any

from loadtest.bench_config import BenchConfig
from loadtest.bench_phases import saturation
from loadtest.bench_stack import Stack, stack_env
from loadtest.bench_summary import save

#: What the issue asks of both phases: no 429 and this share of what the quota allows.
SHARED_TARGET = 0.95
KILLED_TARGET = 0.90
#: The day-quota phase's measured window: the quota runs out within its first seconds.
DAY_MEASURE_S = 20.0
DAILY = "model_daily_quota_exhausted"


def quota_allows_rps(rpm: int, items_per_call: float) -> float:
    """Requests per second the quota lets through when each call carries ``items_per_call``."""
    return rpm * items_per_call / 60


def quota_429s(errors_by_code: dict[str, int]) -> dict[str, int]:
    """The simulator's quota refusals by quota (``429:rpm`` → ``rpm``)."""
    return {code.split(":", 1)[1]: n for code, n in errors_by_code.items() if code.startswith("429:")}


def _settings(config: BenchConfig, rpm: int) -> dict[str, str]:
    """The Gemini-like stack with the quota binding, not the model's call slots: the simulator
    takes any number of calls at once, as Gemini does, and batchgate runs its defaults (its
    workers learn how many calls to run at once, ``batching.slot_tuner``). ``BATCHGATE_*`` of
    the environment win."""
    return {
        **config.stack_settings,
        "BATCHGATE_SIM_MAX_CONCURRENT": "0",
        "BATCHGATE_SIM_RPM": str(rpm),
        "BATCHGATE_MODEL_RPM": str(rpm),
    }


def run_phase(
    name: str, config: BenchConfig, knobs: dict[str, float], kill_after_s: float | None
) -> dict[str, Any]:
    """One phase on a fresh stack: saturation, optionally a worker killed, the quota's verdict."""
    run_dir = config.run_dir / time.strftime("quota-%Y%m%d-%H%M%S") / name
    workers, rpm = int(knobs["workers"]), int(knobs["rpm"])
    stack = Stack(
        run_dir, stack_env(run_dir, settings=_settings(config, rpm)), worker_processes=workers
    ).start()
    killed: list[str] = []
    try:
        if kill_after_s is not None:
            victim = next(p for p in stack.cluster.programs if p.startswith("worker"))

            def kill() -> None:
                time.sleep(knobs["warmup_s"] + kill_after_s)
                stack.cluster.kill(victim)  # a crash mid-work (its messages come back later)
                stack.cluster.stop_program(victim)  # and it stays dead: supervisor would restart it
                killed.append(victim)

            threading.Thread(target=kill, daemon=True).start()
        phase = asyncio.run(
            saturation(stack, int(knobs["clients"]), knobs["warmup_s"], knobs["measure_s"], name)
        )
        with urllib.request.urlopen(f"{stack.sim_url}/_sim/stats", timeout=10) as answer:
            stats = json.load(answer)
    finally:
        stack.stop()
    allowed = quota_allows_rps(rpm, phase["sim"]["items_per_call"])
    share = phase["throughput_rps"] / allowed if allowed else 0.0
    target = SHARED_TARGET if kill_after_s is None else KILLED_TARGET
    refusals = quota_429s(stats.get("errors_by_code") or {})
    return {
        "phase": name,
        "workers": workers,
        "killed": killed,
        "rpm": rpm,
        "throughput_rps": phase["throughput_rps"],
        "items_per_call": phase["sim"]["items_per_call"],
        "quota_allows_rps": round(allowed, 3),
        "share_of_quota": round(share, 4),
        "quota_429s": refusals,
        "met": not refusals and share >= target,
        "target": f"0 simulator 429s and ≥ {target} of what the quota allows",
        "saturation": phase,
    }


def run_day_quota(config: BenchConfig, knobs: dict[str, float], rpd: int) -> dict[str, Any]:
    """The simulator's day quota (``rpd`` calls) runs out under saturation; batchgate is not
    told it (Gemini's 429 must teach it): how many calls reached the simulator after its first
    day refusal, and how the tasks ended."""
    run_dir = config.run_dir / time.strftime("quota-%Y%m%d-%H%M%S") / "day_quota"
    workers = int(knobs["workers"])
    settings = {**_settings(config, int(knobs["rpm"])), "BATCHGATE_SIM_RPD": str(rpd)}
    stack = Stack(run_dir, stack_env(run_dir, settings=settings), worker_processes=workers).start()
    try:
        phase = asyncio.run(
            saturation(stack, int(knobs["clients"]), knobs["warmup_s"], DAY_MEASURE_S, "day_quota")
        )
        with urllib.request.urlopen(f"{stack.sim_url}/_sim/stats", timeout=10) as answer:
            stats = json.load(answer)
    finally:
        stack.stop()
    refused = quota_429s(stats.get("errors_by_code") or {}).get("rpd", 0)
    after_first = max(0, refused - 1)  # every call after the first refusal is refused too
    code = f"task failed {DAILY}"
    failed_so = int(phase["errors"].get(code, 0))
    return {
        "phase": "day_quota",
        "workers": workers,
        "rpd": rpd,
        "calls_before_the_quota_ran_out": int(stats.get("calls", 0)),
        "calls_after_first_day_refusal": after_first,
        "tasks_failed_model_daily_quota_exhausted": failed_so,
        "other_errors": {k: v for k, v in phase["errors"].items() if k != code},
        "met": refused >= 1 and after_first <= workers and failed_so > 0,
        "target": f"calls after the first day refusal <= {workers} (the workers), tasks fail with {DAILY}",
    }


def main() -> int:
    env = os.environ
    knobs = {
        "workers": float(env.get("QUOTATEST_WORKERS", "2")),
        "rpm": float(env.get("QUOTATEST_RPM", "300")),
        "clients": float(env.get("QUOTATEST_CLIENTS", "384")),
        "warmup_s": float(env.get("QUOTATEST_WARMUP_S", "10")),
        "measure_s": float(env.get("QUOTATEST_MEASURE_S", "120")),
    }
    kill_after_s = float(env.get("QUOTATEST_KILL_AFTER_S", "60"))
    config = BenchConfig.from_env(env)
    phases = [run_phase("shared", config, knobs, None), run_phase("one_killed", config, knobs, kill_after_s)]
    day = run_day_quota(config, knobs, int(env.get("QUOTATEST_RPD", "40")))
    print(
        f"day_quota: {day['calls_after_first_day_refusal']} calls after the first day refusal "
        f"({day['workers']} workers), {day['tasks_failed_model_daily_quota_exhausted']} tasks failed "
        f"model_daily_quota_exhausted, other errors {day['other_errors'] or 0}: {'met' if day['met'] else 'NOT met'}",
        file=sys.stderr,
    )
    for p in phases:
        print(
            f"{p['phase']}: {p['throughput_rps']} req/s at {p['items_per_call']} items per call, "
            f"{p['share_of_quota']} of the quota's {p['quota_allows_rps']} req/s, 429s {p['quota_429s'] or 0}"
            f"{', killed ' + ', '.join(p['killed']) if p['killed'] else ''}: {'met' if p['met'] else 'NOT met'}",
            file=sys.stderr,
        )
    report = {"knobs": knobs, "kill_after_s": kill_after_s, "phases": phases, "day_quota": day}
    path = save(report, config.report_dir, "quotatest")
    print(f"report saved to {path}", file=sys.stderr)
    return 0 if all(p["met"] for p in phases) and day["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
