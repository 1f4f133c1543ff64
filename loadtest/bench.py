"""``make bench``: how much batching buys, how close to the model's limit we get, what it costs.

One run, loopback only, a few minutes. Every phase runs on a fresh local stack
(``stack.cluster.Cluster``: own ports, own Redis, own run folder, a premium key with
the rate limits and the backpressure mark raised out of the way) and a simulator set to a
Gemini-like cost model (``GEMINI_LIKE``), except the fast pair below. Phases, batching on and
off interleaved:

    on#1 (low-load overhead, then saturation) · off#1 · on#2 · off#2 … · <other mode> · fast-window · fast-adaptive

Every stack sets ``BATCHGATE_FLUSH_MODE`` explicitly. The rounds run the default mode
(``ConsumerSettings().flush_mode``, or the caller's ``BATCHGATE_FLUSH_MODE``): the headline
figures are that mode's.

Saturation: ``BENCH_CLIENTS`` closed-loop clients (submit, then long-poll) for
``BENCH_WARMUP_S`` + ``BENCH_MEASURE_S``; only completions inside the measured window count.
Batching off is ``BATCHGATE_BATCH_MAX_SIZE=1`` (one request per batch, one per call).
Prints one JSON summary and saves it to ``loadtest/reports/bench-<timestamp>.json``.

Flush modes, Gemini-like: after the rounds, one more stack runs the mode the rounds do not
(``adaptive`` if they run window, ``window`` if they run adaptive): low load, then saturation
(``BENCH_ADAPTIVE=0`` skips it). Reported as ``adaptive_flush``: each figure by mode, and
``adaptive_vs_window_throughput`` (adaptive's saturation throughput over window's; the rounds'
side is their batched median).

Flush modes, fast model: then two stacks on the instant model (``INSTANT``: the simulator answers
at once, no slot limit, no quota), ``fast-window`` and ``fast-adaptive``, each with low load, then
saturation with ``BENCH_FAST_CLIENTS`` clients sending one request per task; then again in the
other order, ``BENCH_FAST_ROUNDS`` (2) rounds in all, so a drift of the machine's speed weighs
on both modes (``BENCH_FAST=0`` skips them). Reported as ``fast_model``, medians over the
rounds: where the stack itself is the bottleneck, what each mode costs.

Tenants: requests of different tenants never share a model call. ``BENCH_TENANTS`` (``1,8``)
lists tenant counts; every phase spreads its clients evenly over the first count's tenants
(1: the stack's demo key, its own tenant; more: premium keys in tenants ``bench-1`` …), and
each further count adds one saturation phase on the first batching-on stack, once the tasks
its previous phase left have drained (``batched-1-tenants-8``): same stack, same load, same
durations. Reported as ``tenants``: calls per request and throughput at each count, and the
ratios to the first.

Knobs (environment): ``BENCH_ROUNDS`` (2), ``BENCH_WARMUP_S`` (8), ``BENCH_MEASURE_S`` (20),
``BENCH_CLIENTS`` (384), ``BENCH_TENANTS`` (``1,8``), ``BENCH_OVERHEAD_REQUESTS`` (60),
``BENCH_IDLE_S`` (5: the idle stack's own CPU, measured once), ``BENCH_ADAPTIVE`` (1: the
other-mode stack), ``BENCH_FAST`` (1: the fast pair), ``BENCH_FAST_CLIENTS`` (64),
``BENCH_PRESTART`` (off; on: start the next stack during a phase, for smoke runs),
``BENCH_RUN_DIR`` (``.run/bench``), ``BENCH_REPORT_DIR`` (``loadtest/reports``).
``BATCHGATE_FLUSH_MODE`` picks the rounds' mode. Any other ``BATCHGATE_*`` variable (e.g.
``BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS=1``) is passed to the stacks (the fast pair's cost model
excepted), except ports, Redis, folders and keys, which the benchmark owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from loadtest.bench_config import BenchConfig, StackPlan
from loadtest.bench_phases import cost_model, idle_cores, low_load, saturation
from loadtest.bench_stack import Stack, stack_env
from loadtest.bench_summary import (
    TENANTS_STACK,
    reported_settings,
    save,
    summarise,
    tenants_phase,
)

#: How long an extra tenant phase waits for the tasks the previous phase left to finish.
DRAIN_TIMEOUT_S = 60.0


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def calibration_ms(repeats: int = 5) -> float:
    """CPU milliseconds of a fixed pure-Python workload (JSON round trips and hashing of a
    task-sized body), best of ``repeats``: the machine's speed right now.

    CPU time per request is only comparable between runs at similar calibration: on a
    shared machine the same code measured up to 30 % apart an hour apart.
    """
    body = {"prompt": "Summarise step 42 of the deployment log in one sentence.", "model": "m", "n": 1}
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for i in range(20_000):
            body["n"] = i
            text = json.dumps(body)
            hashlib.sha256(text.encode()).hexdigest()
            json.loads(text)
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run every phase and return the summary (see the module docstring)."""
    calibration = calibration_ms()
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    phases: list[dict[str, Any]] = []
    low_loads: dict[str, dict[str, Any]] = {}
    idle: dict[str, float] = {}
    settings_used: dict[str, Any] = {}
    sim_config: dict[str, Any] = {}
    plans = config.plan()

    def start(plan: StackPlan) -> Stack:
        run_dir = config.run_dir / stamp / plan.name
        _log(f"{plan.name}: starting a stack ({plan.model} model) in {run_dir}")
        return Stack(run_dir, stack_env(run_dir, settings=plan.settings)).start()

    def keys(stack: Stack, tenants: int) -> list[str]:
        """One key per tenant: the demo key alone, or keys in tenants ``bench-1`` …"""
        return [stack.api_key] if tenants == 1 else stack.tenant_keys(tenants)

    def measure(stack: Stack, plan: StackPlan, name: str, tenants: int) -> dict[str, Any]:
        _log(
            f"{name}: saturation, {plan.clients} clients in {tenants} tenant(s), "
            f"{config.warmup_s}+{config.measure_s} s"
        )
        phase = asyncio.run(
            saturation(
                stack,
                plan.clients,
                config.warmup_s,
                config.measure_s,
                f"{stamp}-{name}",
                keys(stack, tenants),
                plan.one_request_per_task,
            )
        )
        phase["phase"], phase["model"] = name, plan.model
        _log(
            f"{name}: {phase['throughput_rps']} req/s, {phase['sim']['items_per_call']} items/call, "
            f"{phase['calls_per_request']} calls/request, efficiency {phase['efficiency']}, "
            f"CPU {phase['cpu']['stack_ms_per_request']} ms/request"
        )
        return phase

    # One stack at a time, except that the previous one may still be stopping while the next
    # starts (nothing is measured then), and with ``prestart`` the next starts during a phase.
    stopping: list[threading.Thread] = []
    with ThreadPoolExecutor(max_workers=1) as starter:
        upcoming: Future[Stack] | None = starter.submit(start, plans[0])
        try:
            for index, plan in enumerate(plans):
                name = plan.name
                assert upcoming is not None
                stack, upcoming = upcoming.result(), None
                if config.prestart and index + 1 < len(plans):
                    upcoming = starter.submit(start, plans[index + 1])
                for thread in stopping:
                    thread.join()
                try:
                    if not sim_config:
                        _, sim_config = asyncio.run(cost_model(stack))
                        settings_used = reported_settings(stack)
                    if not idle and config.idle_s > 0:
                        _log(f"{name}: idle for {config.idle_s} s")
                        idle = idle_cores(stack, config.idle_s)
                    if plan.low_load:
                        _log(f"{name}: low load, {config.overhead_requests} requests one at a time")
                        low = asyncio.run(
                            low_load(
                                stack,
                                config.overhead_requests,
                                f"{stamp}-low-{name}",
                                plan.one_request_per_task,
                            )
                        )
                        low_loads[name] = {"stack": name, "model": plan.model, **low}
                        _log(f"{name}: overhead p50 {low.get('p50')} ms, p99 {low.get('p99')} ms")
                    phases.append(measure(stack, plan, name, config.tenants[0]))
                    if name == TENANTS_STACK:
                        for tenants in config.tenants[1:]:
                            # Start from an empty queue, as the phase before did (after low load).
                            left = stack.wait_drained(DRAIN_TIMEOUT_S)
                            if left:
                                _log(f"{name}: {left} tasks still in flight after {DRAIN_TIMEOUT_S} s")
                            phase = measure(stack, plan, tenants_phase(tenants), tenants)
                            phase["in_flight_at_start"] = left
                            phases.append(phase)
                finally:
                    stopping.append(stack.stop_in_background())
                if index + 1 < len(plans) and upcoming is None:
                    upcoming = starter.submit(start, plans[index + 1])
        finally:
            if upcoming is not None:
                with contextlib.suppress(BaseException):
                    upcoming.result().stop()
            for thread in stopping:
                thread.join()
    report = summarise(phases, low_loads, idle, settings_used, sim_config, config, time.monotonic() - started)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "calibration_ms_before": calibration,
        "calibration_ms_after": calibration_ms(),
        "note": "CPU ms of a fixed Python workload; compare cpu_ms_per_request only between runs "
        "with similar calibration",
    }
    return report


def main() -> int:
    config = BenchConfig.from_env(os.environ)
    _log(f"settings for every stack: {json.dumps(dict(config.stack_settings))}")
    _log(f"stacks: {', '.join(p.name for p in config.plan())}; the rounds flush in {config.flush_mode} mode")
    report = run_bench(config)
    path = save(report, config.report_dir)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    _log(f"report saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
