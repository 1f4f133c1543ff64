"""One measured phase of the benchmark on one stack: saturation, low load, or the idle stack."""

from __future__ import annotations

import asyncio
import math
import os
import resource
import time
from collections.abc import Sequence
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
from loadtest.bench_stack import STACK_GROUPS, Stack
from loadtest.bench_stats import CallMix, CostModel, median, overheads_ms, summary_ms
from stack import procfs

#: Requests sent (and not counted) before the low-load phase: the first call opens connections.
LOW_LOAD_WARMUP_REQUESTS = 3


def _plain_session() -> aiohttp.ClientSession:
    """For the simulator's control surface: no API key, no proxy."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), trust_env=False)


async def cost_model(stack: Stack) -> tuple[CostModel, dict[str, Any]]:
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
    one_request_per_task: bool = False,
) -> dict[str, Any]:
    """Drive ``clients`` closed-loop clients, spread evenly over ``api_keys`` (default: the
    stack's demo key); measure throughput, calls, CPU in the steady window. The clients submit
    and long-poll, or send ``one_request_per_task`` (``bench_load.Client``'s ``sync``)."""
    cost, _ = await cost_model(stack)
    keys = list(api_keys) or [stack.api_key]
    run = LoadRun()
    async with session(stack.api_key, clients) as api, _plain_session() as sim:
        load = asyncio.create_task(
            closed_loop(Client(api, stack.url, run, sync=one_request_per_task), clients, prompts(tag), keys)
        )
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
    # Throughput: the items the model answered in the window, pro rata (CallMix.work_items),
    # less the share of requests that failed (a failed request is not throughput). Counting
    # the completions that fell in the window instead (``completed_rps``) depends on where a
    # few long calls end: measured, 8 slots of 4.5 s calls in a 30 s window read 0.93 to 1.06
    # of the slots' capacity from one run to the next.
    completed_rps = succeeded / seconds
    rate = (
        completed_rps if mix.work_items is None else mix.work_items / seconds * (succeeded / n if n else 0.0)
    )
    # CPU per request: over the requests the window's work served, counted the same way.
    served = n if mix.work_items is None else mix.work_items
    # No limit (no slot limit and no quota, as on the instant model) is reported as None.
    limit = _finite(mix.limit(cost))
    batch_size = stack.settings.consumer.batch_max_size
    limit_at_max_batch = _finite(mix.limit_at(cost, batch_size))
    return {
        "tag": tag,
        "batch_max_size": batch_size,
        "flush_mode": stack.settings.consumer.flush_mode,
        "clients": clients,
        "tenants": len(keys),
        "client": "one request per task" if one_request_per_task else "submit, then long-poll",
        "window_s": round(seconds, 3),
        "completed": n,
        "failed": sum(1 for c in done if c.status != "succeeded"),
        "throughput_rps": round(rate, 3),
        "completed_rps": round(completed_rps, 3),
        "latency_ms": summary_ms(latencies),
        "sim": {
            "calls": mix.calls,
            "items": mix.items,
            "errors": mix.errors,
            "items_per_call": round(mix.items_per_call, 3),
            "prompt_tokens_per_item": round(mix.prompt_tokens / mix.items, 2) if mix.items else None,
            "output_tokens_per_item": round(mix.output_tokens / mix.items, 2) if mix.items else None,
            "slot_utilisation": round(mix.slot_utilisation(cost, seconds), 3),
            "work_items": round(mix.work_items, 3) if mix.work_items is not None else None,
        },
        "batch_size_seen": _mean_of(done, "batch_size"),
        "items_in_call_seen": _mean_of(done, "items_in_call"),
        "calls_per_request": round(mix.calls / n, 4) if n else None,
        "calls_per_request_seen": _calls_per_request_seen(done),
        "http_requests_per_request": round(sum(1 for t in run.http_sent if t0 <= t < t1) / n, 3)
        if n
        else None,
        "theoretical_limit_rps": round(limit, 3) if limit is not None else None,
        "theoretical_limit_at_max_batch_rps": round(limit_at_max_batch, 3)
        if limit_at_max_batch is not None
        else None,
        "efficiency": round(rate / limit, 4) if limit else None,
        "cpu": {
            "stack_ms_per_request": round(stack_cpu_s * 1000 / served, 3) if served else None,
            "all_stack_processes_ms_per_request": round((stack_cpu_s + other_cpu_s) * 1000 / served, 3)
            if served
            else None,
            "ms_per_request_by_group": {
                name: round(s * 1000 / served, 3) if served else None
                for name, s in sorted(cpu.seconds.items())
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


async def low_load(stack: Stack, count: int, tag: str, one_request_per_task: bool = False) -> dict[str, Any]:
    """One request at a time: what the stack adds to a model call when nothing else is in flight."""
    cost, _ = await cost_model(stack)
    run = LoadRun()
    async with session(stack.api_key, 1) as api:
        client = Client(api, stack.url, run, sync=one_request_per_task)
        supply = prompts(tag)
        await sequential(client, LOW_LOAD_WARMUP_REQUESTS, supply)
        run.completions.clear()
        await sequential(client, count, supply)
    done = [c for c in run.completions if c.status == "succeeded"]
    e2e = [c.latency_ms for c in done]
    overhead = overheads_ms(e2e, [c.timings.get("model_ms") for c in done])
    # The simulator's own time for a lone item is its cost model applied to the call's usage.
    # The simulator's own time for each call, as it reported it (its Server-Timing header).
    versus_server = [
        c.latency_ms - float(c.timings["model_server_ms"]) for c in done if "model_server_ms" in c.timings
    ]
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
        "client": "one request per task" if one_request_per_task else "submit, then long-poll",
        "versus_sim_cost_model": summary_ms(versus_sim),
        "versus_sim_server_time": summary_ms(versus_server),
        "end_to_end": summary_ms(e2e),
        "stage_medians_ms": stages,
        "requests": count,
        "failed": len(run.completions) - len(done),
        "errors": dict(run.errors),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


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
