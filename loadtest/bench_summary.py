"""The benchmark's report: the headline figures against their targets, and the ratios between phases."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_config import GEMINI_MODEL, BenchConfig
from loadtest.bench_modes import compare_fast_model, compare_flush_modes, ratio
from loadtest.bench_stack import STACK_GROUPS, Stack
from loadtest.bench_stats import median

#: The stack on which the extra tenant counts are measured, after its own saturation phase.
TENANTS_STACK = "batched-1"
#: The rounds' stack of the low-load phase whose overhead is the headline.
OVERHEAD_STACK = "batched-1"
#: What we aim for; the report says which are met (None: not measured in this run), nothing more.
#: Gemini-like: the rounds' figures, and the default mode against window; instant: the fast pair.
TARGETS = {
    "batched_vs_unbatched": ("min", 8.0),
    "efficiency": ("min", 0.95),
    "overhead_p50_ms": ("max", 15.0),
    "cpu_ms_per_request": ("max", 5.0),
    "adaptive_vs_window_throughput": ("min", 1.0),
    "adaptive_vs_window_fast": ("min", 0.95),
    "cpu_ms_per_request_fast": ("max", 4.0),
}


def round_phases(phases: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The rounds' saturation phases of ``kind`` (``batched``, ``unbatched``): Gemini-like, named
    ``<kind>-<n>``; not the extra tenant, flush-mode or fast-model phases."""
    pattern = re.compile(rf"{kind}-\d+")
    return [p for p in phases if p["model"] == GEMINI_MODEL and pattern.fullmatch(p["phase"])]


def overhead_above_sim_p50(low_load: Mapping[str, Any]) -> float | None:
    """Low-load p50 of what the stack adds to the simulator's own time for the call: end to
    end minus the time the simulator reported (``versus_sim_server_time``, its Server-Timing
    header), else minus its cost model's time (``versus_sim_cost_model``), else minus the
    model call's time as the worker saw it."""
    for figure in ("versus_sim_server_time", "versus_sim_cost_model"):
        value = (low_load.get(figure) or {}).get("p50")
        if value is not None:
            return float(value)
    value = low_load.get("p50")
    return float(value) if value is not None else None


def check_targets(values: Mapping[str, float | None]) -> dict[str, dict[str, Any]]:
    """Each target's value, bound and whether it is met (None when the value was not measured)."""
    targets: dict[str, dict[str, Any]] = {}
    for name, (kind, bound) in TARGETS.items():
        value = values.get(name)
        met = None if value is None else value >= bound if kind == "min" else value <= bound
        targets[name] = {"value": value, "target": f"{'≥' if kind == 'min' else '≤'} {bound}", "met": met}
    return targets


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
        for figure, name in (("calls_per_request", "calls_ratio"), ("req_per_s", "throughput_ratio")):
            block[f"{name}_{n}_vs_{counts[0]}"] = ratio(other.get(figure), first.get(figure))
    return block


def reported_settings(stack: Stack) -> dict[str, Any]:
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
    low_loads: Mapping[str, dict[str, Any]],
    idle: dict[str, float],
    settings_used: dict[str, Any],
    sim_config: dict[str, Any],
    config: BenchConfig,
    duration_s: float,
) -> dict[str, Any]:
    """The headline figures (medians over rounds, and the flush-mode ratios), the phases behind
    them and the settings. ``low_loads``: the low-load phases by stack name."""
    # The extra tenant, flush-mode and fast-model phases have their own blocks.
    on, off = round_phases(phases, "batched"), round_phases(phases, "unbatched")
    overhead = low_loads.get(OVERHEAD_STACK, {})
    overhead_p50 = overhead_above_sim_p50(overhead)
    on_rate = median(p["throughput_rps"] for p in on) if on else 0.0
    off_rate = median(p["throughput_rps"] for p in off) if off else 0.0

    def med(values: list[Any]) -> float | None:
        present = [v for v in values if v is not None]
        return round(median(present), 4) if present else None

    figures: dict[str, Any] = {
        "batched_vs_unbatched": round(on_rate / off_rate, 3) if off_rate else None,
        "efficiency": med([p["efficiency"] for p in on]),
        "calls_per_request": med([p["calls_per_request"] for p in on]),
        "overhead_ms": {
            **{k: overhead.get(k) for k in ("p50", "p99", "p50_above_window", "p99_above_window")},
            "p50_above_sim": overhead_p50,
        },
        "cpu_ms_per_request": med([p["cpu"]["stack_ms_per_request"] for p in on]),
    }
    blocks: dict[str, Any] = {}
    if config.adaptive:
        rounds = {
            "saturation_rps": round(on_rate, 3) if on else None,
            "items_per_call": med([p["sim"]["items_per_call"] for p in on]),
            "low_load": overhead,
        }
        extra = [p for p in phases if p["phase"] == config.compared_mode]
        blocks["adaptive_flush"] = compare_flush_modes(
            config.flush_mode, rounds, extra[0] if extra else None, low_loads.get(config.compared_mode, {})
        )
    fast: dict[str, Any] = {}
    if config.fast:
        fast = blocks["fast_model"] = compare_fast_model(phases, low_loads, config.fast_clients)
    figures["adaptive_vs_window_fast"] = fast.get("adaptive_vs_window_fast")
    figures["cpu_ms_per_request_fast"] = (fast.get("cpu_ms_per_request_fast") or {}).get(config.flush_mode)
    on_limit = med([p["theoretical_limit_rps"] for p in on])
    off_limit = med([p["theoretical_limit_rps"] for p in off])
    full_limit = med([p["theoretical_limit_at_max_batch_rps"] for p in on])
    targets = check_targets(
        {
            "batched_vs_unbatched": figures["batched_vs_unbatched"],
            "efficiency": figures["efficiency"],
            "overhead_p50_ms": overhead_p50,
            "cpu_ms_per_request": figures["cpu_ms_per_request"],
            "adaptive_vs_window_throughput": (blocks.get("adaptive_flush") or {}).get(
                "adaptive_vs_window_throughput"
            ),
            "adaptive_vs_window_fast": figures["adaptive_vs_window_fast"],
            "cpu_ms_per_request_fast": figures["cpu_ms_per_request_fast"],
        }
    )
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
        **blocks,
        "targets": targets,
        "phases": phases,
        "cost_model": sim_config,
        "settings": settings_used,
        "bench": {
            "rounds": config.rounds,
            "rounds_flush_mode": config.flush_mode,
            "compared_flush_mode": config.compared_mode if config.adaptive else None,
            "fast": config.fast,
            "fast_clients": config.fast_clients,
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
