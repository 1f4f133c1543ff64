"""``make bench``: how much batching buys, how close to the model's limit we get, what it costs.

One run, loopback only, a few minutes. Every phase runs on a fresh local stack
(``stack.cluster.Cluster``: own ports, own Redis, own run folder, a premium key with
the rate limits and the backpressure mark raised out of the way) and a simulator set to a
Gemini-like cost model (``GEMINI_LIKE``). Phases, batching on and off interleaved:

    on#1 (low-load overhead, then saturation) · off#1 · on#2 · off#2 …

Saturation: ``BENCH_CLIENTS`` closed-loop clients (submit, then long-poll) for
``BENCH_WARMUP_S`` + ``BENCH_MEASURE_S``; only completions inside the measured window count.
Batching off is ``BATCHGATE_BATCH_MAX_SIZE=1`` (one request per batch, one per call).
Prints one JSON summary and saves it to ``loadtest/reports/bench-<timestamp>.json``.

After the rounds, one more stack with ``BATCHGATE_FLUSH_MODE=adaptive`` runs the low-load and
saturation phases again (``BENCH_ADAPTIVE=0`` skips it), reported as ``adaptive_flush``.

Tenants: requests of different tenants never share a model call. ``BENCH_TENANTS`` (``1,8``)
lists tenant counts; every phase spreads its clients evenly over the first count's tenants
(1: the stack's demo key, its own tenant; more: premium keys in tenants ``bench-1`` …), and
each further count adds one saturation phase on the first batching-on stack, once the tasks
its previous phase left have drained (``batched-1-tenants-8``): same stack, same load, same
durations. Reported as ``tenants``: calls per request and throughput at each count, and the
ratios to the first.

Knobs (environment): ``BENCH_ROUNDS`` (2), ``BENCH_WARMUP_S`` (8), ``BENCH_MEASURE_S`` (20),
``BENCH_CLIENTS`` (384), ``BENCH_TENANTS`` (``1,8``), ``BENCH_OVERHEAD_REQUESTS`` (60),
``BENCH_IDLE_S`` (5: the idle stack's own CPU, measured once), ``BENCH_PRESTART`` (off; on:
start the next stack during a phase, for smoke runs), ``BENCH_RUN_DIR`` (``.run/bench``),
``BENCH_REPORT_DIR`` (``loadtest/reports``). Any other ``BATCHGATE_*`` variable (e.g.
``BATCHGATE_FLUSH_MODE=window``, ``BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS=1``) is passed to the
stacks, except ports, Redis, folders and keys, which the benchmark owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from loadtest import bench_cpu
from loadtest.bench_load import (
    Client,
    Completion,
    LoadRun,
    closed_loop,
    get_json,
    prompts,
    sequential,
    session,
)
from loadtest.bench_stack import STACK_GROUPS, Stack, caller_overrides, stack_env
from loadtest.bench_stats import CallMix, CostModel, median, overheads_ms, summary_ms
from stack import procfs
from stack.programs import REPO

#: The default cost model, Gemini-2.5-Flash-like: 400 ms to the first token, input at
#: 50,000 tokens/s, output at 500 tokens/s (a packed call generates all its answers in one
#: stream, so a 32-item answer takes ~32x the output time of one), 8 calls in flight, and a
#: quota of 300 requests per minute (Gemini's Tier 1 grants 150 RPM for 2.5 Pro, 1,000 for
#: 2.5 Flash), which the worker paces itself to (``BATCHGATE_MODEL_RPM``) instead of meeting
#: 429s. Unbatched, the quota binds (5 calls/s, below the slots' ~14/s); batched, the slots
#: bind long before the quota does. The limit formula is in ``bench_stats``.
GEMINI_LIKE = {
    "BATCHGATE_SIM_OVERHEAD_MS": "400",
    "BATCHGATE_SIM_PER_INPUT_TOKEN_MS": "0.02",
    "BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS": "2",
    "BATCHGATE_SIM_MAX_CONCURRENT": "8",
    "BATCHGATE_SIM_RPM": "300",
    "BATCHGATE_MODEL_RPM": "300",
}
UNBATCHED = {"BATCHGATE_BATCH_MAX_SIZE": "1"}
#: The extra phase comparing flush modes: continuous batching (``batching.flush_policy``).
ADAPTIVE = {"BATCHGATE_FLUSH_MODE": "adaptive"}
#: Requests sent (and not counted) before the low-load phase: the first call opens connections.
LOW_LOAD_WARMUP_REQUESTS = 3
#: The stack on which the extra tenant counts are measured, after its own saturation phase.
TENANTS_STACK = "batched-1"
#: How long an extra tenant phase waits for the tasks the previous phase left to finish.
DRAIN_TIMEOUT_S = 60.0
#: What we aim for (issue 5); the report says which are met, nothing more.
TARGETS = {
    "batched_vs_unbatched": ("min", 8.0),
    "efficiency": ("min", 0.85),
    "overhead_p50_above_window_ms": ("max", 15.0),
    "cpu_ms_per_request": ("max", 5.0),
}


@dataclass(frozen=True)
class BenchConfig:
    """The benchmark's knobs (``BENCH_*``) and the settings every stack gets."""

    rounds: int = 2
    warmup_s: float = 8.0
    measure_s: float = 20.0
    clients: int = 384
    #: Tenant counts: every phase runs with the first; each further one adds a saturation phase
    #: on the first batching-on stack.
    tenants: tuple[int, ...] = (1, 8)
    overhead_requests: int = 60
    idle_s: float = 5.0
    #: Run the extra adaptive-flush phase (low load and saturation) after the rounds.
    adaptive: bool = True
    #: Start the next phase's stack while this phase runs (quicker, but its start-up competes
    #: for the CPU with the measurement: for smoke runs only).
    prestart: bool = False
    run_dir: Path = REPO / ".run" / "bench"
    report_dir: Path = REPO / "loadtest" / "reports"
    stack_settings: Mapping[str, str] = field(default_factory=lambda: dict(GEMINI_LIKE))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BenchConfig:
        """Read the knobs; ``BATCHGATE_*`` from ``environ`` override the Gemini-like defaults."""
        default = cls()
        config = cls(
            rounds=int(environ.get("BENCH_ROUNDS", default.rounds)),
            warmup_s=float(environ.get("BENCH_WARMUP_S", default.warmup_s)),
            measure_s=float(environ.get("BENCH_MEASURE_S", default.measure_s)),
            clients=int(environ.get("BENCH_CLIENTS", default.clients)),
            tenants=_counts(environ.get("BENCH_TENANTS", ""), default.tenants),
            overhead_requests=int(environ.get("BENCH_OVERHEAD_REQUESTS", default.overhead_requests)),
            idle_s=float(environ.get("BENCH_IDLE_S", default.idle_s)),
            prestart=environ.get("BENCH_PRESTART", "") in ("1", "true", "yes"),
            adaptive=environ.get("BENCH_ADAPTIVE", "1") not in ("0", "false", "no"),
            run_dir=Path(environ.get("BENCH_RUN_DIR", default.run_dir)),
            report_dir=Path(environ.get("BENCH_REPORT_DIR", default.report_dir)),
            stack_settings={**GEMINI_LIKE, **caller_overrides(environ)},
        )
        if config.rounds < 1 or config.clients < 1 or config.measure_s <= 0 or config.warmup_s < 0:
            raise ValueError(
                "BENCH_ROUNDS and BENCH_CLIENTS must be ≥ 1, BENCH_MEASURE_S > 0, BENCH_WARMUP_S ≥ 0"
            )
        tenants = config.tenants
        if (
            not tenants
            or len(set(tenants)) < len(tenants)
            or not all(1 <= n <= config.clients for n in tenants)
        ):
            raise ValueError("BENCH_TENANTS: distinct tenant counts, each from 1 to BENCH_CLIENTS")
        return config


def _counts(text: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """``"1,8"`` (or ``"1 8"``) as ``(1, 8)``; empty: ``default``."""
    values = text.replace(",", " ").split()
    return tuple(int(v) for v in values) if values else default


# --- phases ---------------------------------------------------------------------------------


def _plain_session() -> aiohttp.ClientSession:
    """For the simulator's control surface: no API key, no proxy."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), trust_env=False)


async def _cost_model(stack: Stack) -> tuple[CostModel, dict[str, Any]]:
    async with _plain_session() as sim:
        config = await get_json(sim, f"{stack.sim_url}/_sim/config")
    return CostModel.from_config(config), config


async def saturation(
    stack: Stack,
    clients: int,
    warmup_s: float,
    measure_s: float,
    tag: str,
    api_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Drive ``clients`` closed-loop clients, spread evenly over ``api_keys`` (default: the
    stack's demo key); measure throughput, calls, CPU in the steady window."""
    cost, _ = await _cost_model(stack)
    keys = list(api_keys) or [stack.api_key]
    run = LoadRun()
    async with session(stack.api_key, clients) as api, _plain_session() as sim:
        load = asyncio.create_task(closed_loop(Client(api, stack.url, run), clients, prompts(tag), keys))
        try:
            await asyncio.sleep(warmup_s)
            if load.done():
                load.result()  # raise what ended it
            groups0 = stack.process_groups()
            stats0 = await get_json(sim, f"{stack.sim_url}/_sim/stats")
            t0, cpu0, machine0, self0 = (
                time.monotonic(),
                bench_cpu.group_snapshot(groups0, procfs.read_processes()),
                procfs.machine_ticks(),
                _self_cpu_s(),
            )
            await asyncio.sleep(measure_s)
            t1, cpu1, machine1, self1 = (
                time.monotonic(),
                bench_cpu.group_snapshot(stack.process_groups(), procfs.read_processes()),
                procfs.machine_ticks(),
                _self_cpu_s(),
            )
            stats1 = await get_json(sim, f"{stack.sim_url}/_sim/stats")
        finally:
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
    seconds = t1 - t0
    done = run.finished_between(t0, t1)
    mix = CallMix.between(stats0, stats1)
    cpu = bench_cpu.cpu_delta(cpu0, cpu1)
    busy = bench_cpu.busy_share(machine0, machine1)
    stack_cpu_s = sum(cpu.seconds.get(name, 0.0) for name in STACK_GROUPS)
    other_cpu_s = sum(
        s for name, s in cpu.seconds.items() if name not in STACK_GROUPS and name != "simulator"
    )
    n = len(done)
    succeeded = sum(1 for c in done if c.status == "succeeded")
    latencies = [c.latency_ms for c in done]
    rate = succeeded / seconds  # a failed request is not throughput
    limit = mix.limit(cost)
    batch_size = stack.settings.consumer.batch_max_size
    return {
        "tag": tag,
        "batch_max_size": batch_size,
        "flush_mode": stack.settings.consumer.flush_mode,
        "clients": clients,
        "tenants": len(keys),
        "window_s": round(seconds, 3),
        "completed": n,
        "failed": sum(1 for c in done if c.status != "succeeded"),
        "throughput_rps": round(rate, 3),
        "latency_ms": summary_ms(latencies),
        "sim": {
            "calls": mix.calls,
            "items": mix.items,
            "errors": mix.errors,
            "items_per_call": round(mix.items_per_call, 3),
            "prompt_tokens_per_item": round(mix.prompt_tokens / mix.items, 2) if mix.items else None,
            "output_tokens_per_item": round(mix.output_tokens / mix.items, 2) if mix.items else None,
            "slot_utilisation": round(mix.slot_utilisation(cost, seconds), 3),
        },
        "batch_size_seen": _mean_of(done, "batch_size"),
        "items_in_call_seen": _mean_of(done, "items_in_call"),
        "calls_per_request": round(mix.calls / n, 4) if n else None,
        "calls_per_request_seen": _calls_per_request_seen(done),
        "http_requests_per_request": round(sum(1 for t in run.http_sent if t0 <= t < t1) / n, 3)
        if n
        else None,
        "theoretical_limit_rps": round(limit, 3),
        "theoretical_limit_at_max_batch_rps": round(mix.limit_at(cost, batch_size), 3),
        "efficiency": round(rate / limit, 4) if limit else None,
        "cpu": {
            "stack_ms_per_request": round(stack_cpu_s * 1000 / n, 3) if n else None,
            "all_stack_processes_ms_per_request": round((stack_cpu_s + other_cpu_s) * 1000 / n, 3)
            if n
            else None,
            "ms_per_request_by_group": {
                name: round(s * 1000 / n, 3) if n else None for name, s in sorted(cpu.seconds.items())
            },
            "cores_by_group": {name: round(s / seconds, 3) for name, s in sorted(cpu.seconds.items())},
            "busiest_process_cores_by_group": {
                name: round(s / seconds, 3) for name, s in sorted(cpu.busiest.items())
            },
            "loadgen_cores": round((self1 - self0) / seconds, 3),
            "machine_busy_share": round(busy, 3),
            # CPU used by processes outside this stack and this generator (other work on the
            # machine): if it is large, the run was disturbed.
            "other_processes_cores": round(
                max(
                    0.0, busy * (os.cpu_count() or 1) - (sum(cpu.seconds.values()) + self1 - self0) / seconds
                ),
                3,
            ),
            "cpus": os.cpu_count(),
            "vanished_processes": cpu.vanished,
        },
        "errors": dict(run.errors),
    }


def idle_cores(stack: Stack, seconds: float) -> dict[str, float]:
    """Cores each process group uses with no load at all (timers, heartbeats, metrics)."""
    before = bench_cpu.group_snapshot(stack.process_groups(), procfs.read_processes())
    started = time.monotonic()
    time.sleep(seconds)
    after = bench_cpu.group_snapshot(stack.process_groups(), procfs.read_processes())
    elapsed = time.monotonic() - started
    return {name: round(s / elapsed, 4) for name, s in bench_cpu.cpu_delta(before, after).seconds.items()}


async def low_load(stack: Stack, count: int, tag: str) -> dict[str, Any]:
    """One request at a time: what the stack adds to a model call when nothing else is in flight."""
    cost, _ = await _cost_model(stack)
    run = LoadRun()
    async with session(stack.api_key, 1) as api:
        client = Client(api, stack.url, run)
        supply = prompts(tag)
        await sequential(client, LOW_LOAD_WARMUP_REQUESTS, supply)
        run.completions.clear()
        await sequential(client, count, supply)
    done = [c for c in run.completions if c.status == "succeeded"]
    e2e = [c.latency_ms for c in done]
    overhead = overheads_ms(e2e, [c.timings.get("model_ms") for c in done])
    # The simulator's own time for a lone item is its cost model applied to the call's usage.
    versus_sim = [
        c.latency_ms - cost.call_latency_ms(float(usage["input_tokens"]), float(usage["output_tokens"]))
        for c in done
        if c.timings.get("items_in_call") == 1 and (usage := c.usage)
    ]
    settings = stack.settings
    window_ms = settings.consumer.batch_window_ms
    stats = summary_ms(overhead)
    stages = {
        name: round(median(float(c.timings[name]) for c in done if name in c.timings), 2)
        for name in ("queued_ms", "batch_wait_ms", "model_ms", "total_ms")
    }
    stages["client_minus_total_ms"] = round(
        median(c.latency_ms - float(c.timings["total_ms"]) for c in done), 2
    )
    return {
        **stats,
        "p50_above_window": round(stats["p50"] - window_ms, 2) if done else None,
        "p99_above_window": round(stats["p99"] - window_ms, 2) if done else None,
        "window_ms": window_ms,
        "flush_mode": settings.consumer.flush_mode,
        "versus_sim_cost_model": summary_ms(versus_sim),
        "end_to_end": summary_ms(e2e),
        "stage_medians_ms": stages,
        "requests": count,
        "failed": len(run.completions) - len(done),
        "errors": dict(run.errors),
    }


def _mean_of(done: list[Completion], timing: str) -> float | None:
    """Mean of a task timing over requests (so a batch of 32 weighs 32 times one of 1)."""
    values = [float(c.timings[timing]) for c in done if timing in c.timings]
    return round(sum(values) / len(values), 2) if values else None


def _calls_per_request_seen(done: list[Completion]) -> float | None:
    """Mean over requests of each one's share of its model call (1 / items in it): calls per
    request as the requests saw them, unlike the simulator's count free of the window's edges
    (calls made for requests finished after it, or answered from calls made before it)."""
    shares = [1 / float(c.timings["items_in_call"]) for c in done if c.timings.get("items_in_call")]
    return round(sum(shares) / len(shares), 4) if shares else None


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the run --------------------------------------------------------------------------------


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
    overhead: dict[str, Any] = {}
    idle: dict[str, float] = {}
    settings_used: dict[str, Any] = {}
    sim_config: dict[str, Any] = {}
    names = [f"{mode}-{n}" for n in range(1, config.rounds + 1) for mode in ("batched", "unbatched")]
    if config.adaptive:
        names.append("adaptive")
    adaptive_overhead: dict[str, Any] = {}

    def start(name: str) -> Stack:
        mode = UNBATCHED if name.startswith("unbatched") else ADAPTIVE if name == "adaptive" else {}
        overrides = {**config.stack_settings, **mode}
        run_dir = config.run_dir / stamp / name
        _log(f"{name}: starting a stack in {run_dir}")
        return Stack(run_dir, stack_env(run_dir, settings=overrides)).start()

    def keys(stack: Stack, tenants: int) -> list[str]:
        """One key per tenant: the demo key alone, or keys in tenants ``bench-1`` …"""
        return [stack.api_key] if tenants == 1 else stack.tenant_keys(tenants)

    def measure(stack: Stack, name: str, tenants: int) -> dict[str, Any]:
        _log(
            f"{name}: saturation, {config.clients} clients in {tenants} tenant(s), "
            f"{config.warmup_s}+{config.measure_s} s"
        )
        phase = asyncio.run(
            saturation(
                stack,
                config.clients,
                config.warmup_s,
                config.measure_s,
                f"{stamp}-{name}",
                keys(stack, tenants),
            )
        )
        phase["phase"] = name
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
        upcoming: Future[Stack] | None = starter.submit(start, names[0])
        try:
            for index, name in enumerate(names):
                assert upcoming is not None
                stack, upcoming = upcoming.result(), None
                if config.prestart and index + 1 < len(names):
                    upcoming = starter.submit(start, names[index + 1])
                for thread in stopping:
                    thread.join()
                try:
                    if not sim_config:
                        _, sim_config = asyncio.run(_cost_model(stack))
                        settings_used = _settings_used(stack)
                    if not idle and config.idle_s > 0:
                        _log(f"{name}: idle for {config.idle_s} s")
                        idle = idle_cores(stack, config.idle_s)
                    if not overhead and name.startswith("batched"):
                        _log(f"{name}: low load, {config.overhead_requests} requests one at a time")
                        overhead = asyncio.run(low_load(stack, config.overhead_requests, f"{stamp}-low"))
                        _log(f"{name}: overhead p50 {overhead.get('p50')} ms, p99 {overhead.get('p99')} ms")
                    if name == "adaptive":
                        _log(f"{name}: low load, {config.overhead_requests} requests one at a time")
                        adaptive_overhead = asyncio.run(
                            low_load(stack, config.overhead_requests, f"{stamp}-low-adaptive")
                        )
                        _log(f"{name}: overhead p50 {adaptive_overhead.get('p50')} ms")
                    phases.append(measure(stack, name, config.tenants[0]))
                    if name == TENANTS_STACK:
                        for tenants in config.tenants[1:]:
                            # Start from an empty queue, as the phase before did (after low load).
                            left = stack.wait_drained(DRAIN_TIMEOUT_S)
                            if left:
                                _log(f"{name}: {left} tasks still in flight after {DRAIN_TIMEOUT_S} s")
                            phase = measure(stack, tenants_phase(tenants), tenants)
                            phase["in_flight_at_start"] = left
                            phases.append(phase)
                finally:
                    stopping.append(stack.stop_in_background())
                if index + 1 < len(names) and upcoming is None:
                    upcoming = starter.submit(start, names[index + 1])
        finally:
            if upcoming is not None:
                with contextlib.suppress(BaseException):
                    upcoming.result().stop()
            for thread in stopping:
                thread.join()
    report = summarise(phases, overhead, idle, settings_used, sim_config, config, time.monotonic() - started)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "calibration_ms_before": calibration,
        "calibration_ms_after": calibration_ms(),
        "note": "CPU ms of a fixed Python workload; compare cpu_ms_per_request only between runs "
        "with similar calibration",
    }
    if config.adaptive:
        report["adaptive_flush"] = compare_flush_modes(report, adaptive_overhead)
    return report


def tenants_phase(tenants: int) -> str:
    """The name of the extra saturation phase with ``tenants`` tenants."""
    return f"{TENANTS_STACK}-tenants-{tenants}"


def compare_tenants(phases: list[dict[str, Any]], counts: Sequence[int]) -> dict[str, Any]:
    """Calls per request and throughput at each tenant count, all on the first batching-on
    stack at the same load, and each count's figures over the first count's."""
    by_name = {p["phase"]: p for p in phases}
    names = {counts[0]: TENANTS_STACK, **{n: tenants_phase(n) for n in counts[1:]}}
    block: dict[str, Any] = {}
    for n, name in names.items():
        phase = by_name.get(name)
        if phase is not None:
            block[str(n)] = {
                "phase": name,
                "calls_per_request": phase["calls_per_request"],
                "calls_per_request_seen": phase["calls_per_request_seen"],
                "req_per_s": phase["throughput_rps"],
                "items_per_call": phase["sim"]["items_per_call"],
                "clients_per_tenant": round(phase["clients"] / n, 1),
            }
    first = block.get(str(counts[0])) or {}
    for n in counts[1:]:
        other = block.get(str(n)) or {}
        for figure, ratio in (("calls_per_request", "calls_ratio"), ("req_per_s", "throughput_ratio")):
            block[f"{ratio}_{n}_vs_{counts[0]}"] = _ratio(other.get(figure), first.get(figure))
    return block


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def compare_flush_modes(report: dict[str, Any], adaptive_overhead: dict[str, Any]) -> dict[str, Any]:
    """Window (the rounds' batched phases) against adaptive flushing: low-load overhead and
    saturation throughput side by side."""
    adaptive = [p for p in report["phases"] if p["flush_mode"] == "adaptive"]
    window_rate = report["throughput_rps"]["batched_median"]
    adaptive_rate = adaptive[0]["throughput_rps"] if adaptive else None
    return {
        "overhead_p50_ms": {"window": report["overhead_ms"]["p50"], "adaptive": adaptive_overhead.get("p50")},
        "overhead_p99_ms": {"window": report["overhead_ms"]["p99"], "adaptive": adaptive_overhead.get("p99")},
        "saturation_rps": {"window": window_rate, "adaptive": adaptive_rate},
        "adaptive_vs_window_throughput": round(adaptive_rate / window_rate, 3)
        if adaptive_rate and window_rate
        else None,
        "adaptive_items_per_call": adaptive[0]["sim"]["items_per_call"] if adaptive else None,
        "adaptive_overhead": adaptive_overhead,
    }


def _settings_used(stack: Stack) -> dict[str, Any]:
    consumer, packing, api = stack.settings.consumer, stack.settings.packing, stack.settings.api
    return {
        "flush_mode": consumer.flush_mode,
        "batch_max_size": consumer.batch_max_size,
        "batch_window_ms": consumer.batch_window_ms,
        "worker_concurrency": consumer.worker_concurrency,
        "max_concurrent_calls": stack.settings.gemini.max_concurrent_calls,
        "max_items_per_call": packing.max_items_per_call,
        "strategy": packing.strategy,
        "default_max_output_tokens": packing.default_max_output_tokens,
        "api_replicas": len(api.api_ports),
        "api_workers_per_replica": api.api_workers,
        "worker_processes": 1,
        "redis": "started by the stack (counted in its CPU)",
    }


def summarise(
    phases: list[dict[str, Any]],
    overhead: dict[str, Any],
    idle: dict[str, float],
    settings_used: dict[str, Any],
    sim_config: dict[str, Any],
    config: BenchConfig,
    duration_s: float,
) -> dict[str, Any]:
    """The five headline figures (medians over rounds), the phases behind them and the settings."""
    # The extra tenant phases have their own block; the figures are the rounds'.
    rounds = [p for p in phases if p["tenants"] == config.tenants[0]]
    on = [p for p in rounds if p["batch_max_size"] > 1 and p["flush_mode"] != "adaptive"]
    off = [p for p in rounds if p["batch_max_size"] == 1]
    on_rate = median(p["throughput_rps"] for p in on) if on else 0.0
    off_rate = median(p["throughput_rps"] for p in off) if off else 0.0

    def med(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return round(median(present), 4) if present else None

    figures: dict[str, Any] = {
        "batched_vs_unbatched": round(on_rate / off_rate, 3) if off_rate else None,
        "efficiency": med([p["efficiency"] for p in on]),
        "calls_per_request": med([p["calls_per_request"] for p in on]),
        "overhead_ms": {k: overhead.get(k) for k in ("p50", "p99", "p50_above_window", "p99_above_window")},
        "cpu_ms_per_request": med([p["cpu"]["stack_ms_per_request"] for p in on]),
    }
    on_limit = med([p["theoretical_limit_rps"] for p in on])
    off_limit = med([p["theoretical_limit_rps"] for p in off])
    full_limit = med([p["theoretical_limit_at_max_batch_rps"] for p in on])
    checks = {
        "batched_vs_unbatched": figures["batched_vs_unbatched"],
        "efficiency": figures["efficiency"],
        "overhead_p50_above_window_ms": figures["overhead_ms"]["p50_above_window"],
        "cpu_ms_per_request": figures["cpu_ms_per_request"],
    }
    targets = {
        name: {
            "value": checks[name],
            "target": f"{'≥' if kind == 'min' else '≤'} {bound}",
            "met": checks[name] is not None
            and (checks[name] >= bound if kind == "min" else checks[name] <= bound),
        }
        for name, (kind, bound) in TARGETS.items()
    }
    return {
        **figures,
        "throughput_rps": {
            "batched": [p["throughput_rps"] for p in on],
            "unbatched": [p["throughput_rps"] for p in off],
            "batched_median": round(on_rate, 3),
            "unbatched_median": round(off_rate, 3),
        },
        "theoretical": {
            "batched_limit_rps": on_limit,
            "unbatched_limit_rps": off_limit,
            "ratio_of_limits": round(on_limit / off_limit, 3) if on_limit and off_limit else None,
            "batched_limit_at_full_batches_rps": full_limit,
            "ratio_of_limits_at_full_batches": round(full_limit / off_limit, 3)
            if full_limit and off_limit
            else None,
            "efficiency_vs_full_batches": round(on_rate / full_limit, 4) if full_limit else None,
            "formula": "min(max_concurrent * n / latency(n), rpm * n / 60); latency(n) = overhead_ms + "
            "prompt_tokens * per_input_token_ms + output_tokens * per_output_token_ms, n/tokens = "
            "means per call in the measured window (/_sim/stats)",
        },
        "overhead": overhead,
        "cpu": {
            "counted": list(STACK_GROUPS),
            "batched_ms_per_request": figures["cpu_ms_per_request"],
            "unbatched_ms_per_request": med([p["cpu"]["stack_ms_per_request"] for p in off]),
            "batched_ms_per_request_by_group": _median_by_group(on),
            "idle_cores_by_group": idle,
            "batched_ms_per_request_above_idle": _above_idle(on, idle),
        },
        "tenants": compare_tenants(phases, config.tenants),
        "targets": targets,
        "phases": phases,
        "cost_model": sim_config,
        "settings": settings_used,
        "bench": {
            "rounds": config.rounds,
            "warmup_s": config.warmup_s,
            "measure_s": config.measure_s,
            "clients": config.clients,
            "tenants": list(config.tenants),
            "overhead_requests": config.overhead_requests,
            "stack_settings": dict(config.stack_settings),
            "idle_s": config.idle_s,
            "duration_s": round(duration_s, 1),
        },
    }


def _median_by_group(phases: list[dict[str, Any]]) -> dict[str, float]:
    """Median over phases of each process group's CPU ms per request."""
    names = sorted({name for p in phases for name in p["cpu"]["ms_per_request_by_group"]})
    return {
        name: round(median(p["cpu"]["ms_per_request_by_group"].get(name) or 0.0 for p in phases), 3)
        for name in names
    }


def _above_idle(phases: list[dict[str, Any]], idle: Mapping[str, float]) -> float | None:
    """Stack CPU per request once the idle stack's own use (timers, metrics) is taken out."""
    idle_cores = sum(idle.get(name, 0.0) for name in STACK_GROUPS)
    values = [
        (sum(p["cpu"]["cores_by_group"].get(name, 0.0) for name in STACK_GROUPS) - idle_cores)
        * 1000
        / p["throughput_rps"]
        for p in phases
        if p["throughput_rps"]
    ]
    return round(median(values), 3) if values and idle else None


def save(report: dict[str, Any], report_dir: Path, prefix: str = "bench") -> Path:
    """Write the report as ``<prefix>-<timestamp>.json`` in ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path


def main() -> int:
    config = BenchConfig.from_env(os.environ)
    _log(f"settings for every stack: {json.dumps(dict(config.stack_settings))}")
    report = run_bench(config)
    path = save(report, config.report_dir)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    _log(f"report saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
