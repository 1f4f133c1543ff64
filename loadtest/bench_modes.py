"""The benchmark's flush-mode comparisons: window against adaptive, on each cost model.

Every block keys its figures by mode (``{"window": …, "adaptive": …}``) and says which phases
measured each, so a report reads the same whichever mode is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loadtest.bench_config import (
    FAST_MODEL,
    FAST_STACKS,
    FLUSH_MODES,
    GEMINI_MODEL,
    INSTANT,
    other_flush_mode,
)
from loadtest.bench_stats import median


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` rounded for the report; None when either is missing or ``b`` is 0."""
    return round(a / b, 3) if a is not None and b else None


def compare_flush_modes(
    rounds_mode: str,
    rounds: Mapping[str, Any],
    extra_phase: Mapping[str, Any] | None,
    extra_low_load: Mapping[str, Any],
) -> dict[str, Any]:
    """Gemini-like model: the rounds' batched phases (``rounds_mode``; ``rounds`` holds their
    median ``saturation_rps``, ``items_per_call`` and their ``low_load``) against the extra
    stack, which runs the other mode: low-load overhead and saturation throughput side by side."""
    other = other_flush_mode(rounds_mode)
    sides: dict[str, Mapping[str, Any]] = {
        rounds_mode: rounds,
        other: {
            "saturation_rps": extra_phase["throughput_rps"] if extra_phase else None,
            "items_per_call": extra_phase["sim"]["items_per_call"] if extra_phase else None,
            "low_load": extra_low_load,
        },
    }

    def by_mode(figure: str) -> dict[str, Any]:
        return {mode: sides[mode].get(figure) for mode in FLUSH_MODES}

    def low_load(figure: str) -> dict[str, Any]:
        return {mode: (sides[mode].get("low_load") or {}).get(figure) for mode in FLUSH_MODES}

    rates = by_mode("saturation_rps")
    return {
        "model": GEMINI_MODEL,
        "measured_on": {rounds_mode: "the rounds' batched phases (median)", other: f"the '{other}' stack"},
        "adaptive_vs_window_throughput": ratio(rates["adaptive"], rates["window"]),
        "saturation_rps": rates,
        "items_per_call": by_mode("items_per_call"),
        "overhead_p50_ms": low_load("p50"),
        "overhead_p99_ms": low_load("p99"),
        f"{other}_low_load": dict(extra_low_load),
    }


def compare_fast_model(
    phases: Sequence[Mapping[str, Any]], low_loads: Mapping[str, Mapping[str, Any]], clients: int
) -> dict[str, Any]:
    """Instant model (the simulator answers at once): what each flush mode costs when the model
    is not the bottleneck. ``phases`` holds the fast pair's saturation phases (every round;
    each figure is the median over a mode's rounds), ``low_loads`` the first round's low-load
    phases by stack name."""
    saturated = {
        mode: [p for p in phases if p.get("model") == FAST_MODEL and p["flush_mode"] == mode]
        for mode in FLUSH_MODES
    }
    low = {mode: dict(low_loads.get(name) or {}) for mode, name in FAST_STACKS.items()}

    def pick(figure: Callable[[Mapping[str, Any]], Any]) -> dict[str, Any]:
        return {
            mode: round(median(values), 3)
            if (values := [v for p in ps if (v := figure(p)) is not None])
            else None
            for mode, ps in saturated.items()
        }

    rates = pick(lambda p: p["throughput_rps"])
    return {
        "model": FAST_MODEL,
        "cost_model": dict(INSTANT),
        "phases": {mode: [p["phase"] for p in ps] for mode, ps in saturated.items()},
        "saturation_rps_by_round": {
            mode: [p["throughput_rps"] for p in ps] for mode, ps in saturated.items()
        },
        "clients": clients,
        "client": "one request per task: POST /api/v1/task?wait=30 (submit and wait in one)",
        "adaptive_vs_window_fast": ratio(rates["adaptive"], rates["window"]),
        "saturation_rps": rates,
        "latency_p50_ms": pick(lambda p: p["latency_ms"].get("p50")),
        "items_per_call_fast": pick(lambda p: p["sim"]["items_per_call"]),
        "cpu_ms_per_request_fast": pick(lambda p: p["cpu"]["stack_ms_per_request"]),
        # End to end: the simulator's own time is ~0 here, so this is the stack's.
        "low_load_p50_ms": {mode: (low[mode].get("end_to_end") or {}).get("p50") for mode in FLUSH_MODES},
        "low_load": low,
    }
