"""The benchmark's report: the headline figures against their targets, and the ratios between phases."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_config import BenchConfig
from loadtest.bench_stack import STACK_GROUPS, Stack
from loadtest.bench_stats import median

#: The stack on which the extra tenant counts are measured, after its own saturation phase.
TENANTS_STACK = "batched-1"
#: What we aim for (issue 5); the report says which are met, nothing more.
TARGETS = {
    "batched_vs_unbatched": ("min", 8.0),
    "efficiency": ("min", 0.85),
    "overhead_p50_above_window_ms": ("max", 15.0),
    "cpu_ms_per_request": ("max", 5.0),
}


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
