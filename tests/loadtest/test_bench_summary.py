"""The benchmark's report and plan from hand-made phases: no stack is started."""

from __future__ import annotations

from typing import Any

import pytest

from batchgate.settings_sections import ConsumerSettings
from loadtest.bench_config import FAST_MODEL, GEMINI_MODEL, INSTANT, UNBATCHED, BenchConfig
from loadtest.bench_modes import compare_fast_model
from loadtest.bench_summary import TARGETS, overhead_above_sim_p50, round_phases, summarise


def phase(
    name: str,
    rate: float,
    *,
    model: str = GEMINI_MODEL,
    mode: str = "window",
    items: float = 20.0,
    cpu: float = 3.0,
    p50: float = 500.0,
    batch: int = 32,
) -> dict[str, Any]:
    """A saturation phase with the fields the summary reads."""
    return {
        "phase": name,
        "model": model,
        "flush_mode": mode,
        "batch_max_size": batch,
        "clients": 384,
        "tenants": 1,
        "throughput_rps": rate,
        "latency_ms": {"n": 100, "p50": p50},
        "efficiency": 0.9,
        "calls_per_request": round(1 / items, 4),
        "calls_per_request_seen": round(1 / items, 4),
        "theoretical_limit_rps": rate / 0.9,
        "theoretical_limit_at_max_batch_rps": rate,
        "sim": {"items_per_call": items},
        "cpu": {
            "stack_ms_per_request": cpu,
            "ms_per_request_by_group": {"api": cpu / 2, "worker": cpu / 2},
            "cores_by_group": {"api": 0.5, "worker": 0.5},
        },
    }


def low(p50: float, versus_sim: float | None = None, e2e: float | None = None) -> dict[str, Any]:
    """A low-load phase: overhead p50, the stack above the simulator's time, end to end."""
    return {
        "p50": p50,
        "p99": p50 * 2,
        "p50_above_window": p50 - 100,
        "p99_above_window": p50 * 2 - 100,
        "versus_sim_cost_model": {"n": 10, "p50": versus_sim} if versus_sim is not None else {"n": 0},
        "end_to_end": {"n": 10, "p50": e2e if e2e is not None else p50 + 500},
    }


def run(mode: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Two rounds in ``mode``, the extra stack in the other mode, the fast pair, a tenant phase."""
    other = "adaptive" if mode == "window" else "window"
    phases = [
        phase("batched-1", 40.0, mode=mode),
        phase("batched-1-tenants-8", 10.0, mode=mode, items=2.0),
        phase("unbatched-1", 5.0, mode=mode, items=1.0, cpu=6.0, batch=1),
        phase("batched-2", 44.0, mode=mode, cpu=4.0),
        phase("unbatched-2", 5.0, mode=mode, items=1.0, cpu=6.0, batch=1),
        phase(other, 42.0 if other == "adaptive" else 40.0, mode=other, items=24.0),
        phase("fast-window", 200.0, model=FAST_MODEL, items=6.0, cpu=3.5, p50=300.0),
        phase("fast-adaptive", 190.0, model=FAST_MODEL, mode="adaptive", items=3.0, cpu=4.5, p50=320.0),
    ]
    low_loads = {
        "batched-1": low(12.0, versus_sim=9.0),
        other: low(30.0, versus_sim=25.0),
        "fast-window": low(110.0, e2e=111.0),
        "fast-adaptive": low(8.0, e2e=9.5),
    }
    return phases, low_loads


def report_of(config: BenchConfig, phases: list[dict[str, Any]], low_loads: dict[str, Any]) -> dict[str, Any]:
    return summarise(phases, low_loads, {}, {}, {}, config, 1.0)


def test_the_rounds_figures_leave_out_tenant_flush_mode_and_fast_phases() -> None:
    phases, low_loads = run("window")
    assert [p["phase"] for p in round_phases(phases, "batched")] == ["batched-1", "batched-2"]
    assert [p["phase"] for p in round_phases(phases, "unbatched")] == ["unbatched-1", "unbatched-2"]
    report = report_of(BenchConfig(flush_mode="window"), phases, low_loads)
    assert report["throughput_rps"]["batched"] == [40.0, 44.0]
    assert report["batched_vs_unbatched"] == pytest.approx(42.0 / 5.0)
    assert report["cpu_ms_per_request"] == pytest.approx(3.5)
    assert report["overhead_ms"]["p50"] == 12.0 and report["overhead_ms"]["p50_above_sim"] == 9.0


def test_window_rounds_are_compared_with_an_adaptive_stack() -> None:
    phases, low_loads = run("window")
    report = report_of(BenchConfig(flush_mode="window"), phases, low_loads)
    flush = report["adaptive_flush"]
    assert flush["saturation_rps"] == {"window": 42.0, "adaptive": 42.0}  # rounds' median, the stack
    assert flush["adaptive_vs_window_throughput"] == 1.0
    assert flush["items_per_call"] == {"window": 20.0, "adaptive": 24.0}
    assert flush["overhead_p50_ms"] == {"window": 12.0, "adaptive": 30.0}
    assert flush["measured_on"]["adaptive"] == "the 'adaptive' stack"
    assert flush["adaptive_low_load"]["p50"] == 30.0
    assert report["bench"]["compared_flush_mode"] == "adaptive"


def test_adaptive_rounds_are_compared_with_a_window_stack() -> None:
    phases, low_loads = run("adaptive")
    report = report_of(BenchConfig(flush_mode="adaptive"), phases, low_loads)
    flush = report["adaptive_flush"]
    assert flush["saturation_rps"] == {"window": 40.0, "adaptive": 42.0}
    assert flush["adaptive_vs_window_throughput"] == pytest.approx(1.05)
    assert flush["overhead_p50_ms"] == {"window": 30.0, "adaptive": 12.0}
    assert "window" in flush["measured_on"]["window"] and "rounds" in flush["measured_on"]["adaptive"]
    # The window stack is neither a round nor in the headline figures.
    assert report["throughput_rps"]["batched"] == [40.0, 44.0]
    assert report["targets"]["adaptive_vs_window_throughput"]["met"] is True
    # The fast figures of the default mode are adaptive's.
    assert report["cpu_ms_per_request_fast"] == 4.5


def test_fast_model_block_and_the_default_modes_figures() -> None:
    phases, low_loads = run("window")
    report = report_of(BenchConfig(flush_mode="window", fast_clients=64), phases, low_loads)
    fast = report["fast_model"]
    assert fast["model"] == FAST_MODEL and fast["clients"] == 64 and fast["cost_model"] == INSTANT
    assert fast["adaptive_vs_window_fast"] == pytest.approx(0.95)
    assert fast["saturation_rps"] == {"window": 200.0, "adaptive": 190.0}
    assert fast["items_per_call_fast"] == {"window": 6.0, "adaptive": 3.0}
    assert fast["cpu_ms_per_request_fast"] == {"window": 3.5, "adaptive": 4.5}
    assert fast["latency_p50_ms"] == {"window": 300.0, "adaptive": 320.0}
    assert fast["low_load_p50_ms"] == {"window": 111.0, "adaptive": 9.5}
    assert fast["phases"] == {"window": ["fast-window"], "adaptive": ["fast-adaptive"]}
    assert report["adaptive_vs_window_fast"] == pytest.approx(0.95)
    assert report["cpu_ms_per_request_fast"] == 3.5  # window: the rounds' mode


def test_targets_are_checked_against_their_bounds() -> None:
    phases, low_loads = run("window")
    targets = report_of(BenchConfig(flush_mode="window"), phases, low_loads)["targets"]
    assert (
        set(targets)
        == set(TARGETS)
        == {
            "batched_vs_unbatched",
            "efficiency",
            "overhead_p50_ms",
            "cpu_ms_per_request",
            "adaptive_vs_window_throughput",
            "adaptive_vs_window_fast",
            "cpu_ms_per_request_fast",
        }
    )
    assert targets["batched_vs_unbatched"] == {"value": 8.4, "target": "≥ 8.0", "met": True}
    assert targets["efficiency"] == {"value": 0.9, "target": "≥ 0.95", "met": False}
    assert targets["overhead_p50_ms"] == {"value": 9.0, "target": "≤ 15.0", "met": True}
    assert targets["cpu_ms_per_request"]["met"] is True
    assert targets["adaptive_vs_window_throughput"] == {"value": 1.0, "target": "≥ 1.0", "met": True}
    assert targets["adaptive_vs_window_fast"] == {"value": 0.95, "target": "≥ 0.95", "met": True}
    assert targets["cpu_ms_per_request_fast"] == {"value": 3.5, "target": "≤ 4.0", "met": True}


def test_skipped_phases_leave_their_blocks_out_and_their_targets_unmeasured() -> None:
    phases, low_loads = run("window")
    rounds = [p for p in phases if p["phase"].startswith(("batched", "unbatched"))]
    report = report_of(BenchConfig(flush_mode="window", adaptive=False, fast=False), rounds, low_loads)
    assert "adaptive_flush" not in report and "fast_model" not in report
    assert report["adaptive_vs_window_fast"] is None and report["cpu_ms_per_request_fast"] is None
    for name in ("adaptive_vs_window_throughput", "adaptive_vs_window_fast", "cpu_ms_per_request_fast"):
        assert report["targets"][name] == {
            "value": None,
            "target": report["targets"][name]["target"],
            "met": None,
        }


def test_overhead_above_the_simulator_falls_back_to_end_to_end_minus_model_time() -> None:
    assert overhead_above_sim_p50(low(12.0, versus_sim=9.0)) == 9.0
    assert overhead_above_sim_p50(low(12.0)) == 12.0  # no lone-item calls: versus_sim is {"n": 0}
    assert overhead_above_sim_p50({}) is None


# --- knobs and the plan ----------------------------------------------------------------------


def test_fast_knobs_and_the_rounds_mode_from_env() -> None:
    config = BenchConfig.from_env({})
    assert (config.fast, config.fast_clients) == (True, 64)
    assert config.flush_mode == ConsumerSettings().flush_mode  # the code's default, whatever it is
    config = BenchConfig.from_env(
        {"BENCH_FAST": "0", "BENCH_FAST_CLIENTS": "16", "BATCHGATE_FLUSH_MODE": "adaptive"}
    )
    assert (config.fast, config.fast_clients, config.flush_mode) == (False, 16, "adaptive")
    assert config.compared_mode == "window"
    assert BenchConfig.from_env({"BATCHGATE_FLUSH_MODE": "window"}).compared_mode == "adaptive"
    for wrong in ({"BATCHGATE_FLUSH_MODE": "eager"}, {"BENCH_FAST_CLIENTS": "4", "BENCH_TENANTS": "8,1"}):
        with pytest.raises(ValueError):
            BenchConfig.from_env(wrong)


def test_every_stack_sets_its_flush_mode_and_the_fast_pair_the_instant_model() -> None:
    config = BenchConfig.from_env(
        {"BENCH_ROUNDS": "2", "BATCHGATE_FLUSH_MODE": "adaptive", "BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS": "1"}
    )
    plans = {p.name: p for p in config.plan()}
    assert list(plans) == [
        "batched-1",
        "unbatched-1",
        "batched-2",
        "unbatched-2",
        "window",
        "fast-window",
        "fast-adaptive",
        "fast-adaptive-2",  # the second round in the other order: drift weighs on both
        "fast-window-2",
    ]
    modes = {name: p.settings["BATCHGATE_FLUSH_MODE"] for name, p in plans.items()}
    assert modes == {
        "batched-1": "adaptive",
        "unbatched-1": "adaptive",
        "batched-2": "adaptive",
        "unbatched-2": "adaptive",
        "window": "window",
        "fast-window": "window",
        "fast-adaptive": "adaptive",
        "fast-adaptive-2": "adaptive",
        "fast-window-2": "window",
    }
    assert [n for n, p in plans.items() if p.low_load] == [
        "batched-1",
        "window",
        "fast-window",
        "fast-adaptive",
    ]
    assert plans["unbatched-1"].settings["BATCHGATE_BATCH_MAX_SIZE"] == UNBATCHED["BATCHGATE_BATCH_MAX_SIZE"]
    assert plans["batched-1"].settings["BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS"] == "1"  # the caller's
    for name in ("fast-window", "fast-adaptive"):
        assert plans[name].model == FAST_MODEL and plans[name].clients == 64
        assert {k: plans[name].settings[k] for k in INSTANT} == INSTANT  # the instant model wins
    assert plans["window"].model == GEMINI_MODEL and plans["window"].clients == config.clients
    skipped = BenchConfig.from_env({"BENCH_ROUNDS": "1", "BENCH_ADAPTIVE": "0", "BENCH_FAST": "0"})
    assert [p.name for p in skipped.plan()] == ["batched-1", "unbatched-1"]


def test_the_fast_pair_reports_the_median_of_its_rounds() -> None:
    phases = [
        phase("fast-window", 300.0, model=FAST_MODEL, items=30.0, cpu=3.0, p50=150.0),
        phase("fast-adaptive", 330.0, model=FAST_MODEL, mode="adaptive", items=29.0, cpu=2.9, p50=140.0),
        phase("fast-adaptive-2", 390.0, model=FAST_MODEL, mode="adaptive", items=31.0, cpu=2.5, p50=120.0),
        phase("fast-window-2", 360.0, model=FAST_MODEL, items=32.0, cpu=2.6, p50=130.0),
    ]
    fast = compare_fast_model(phases, {}, 64)
    assert fast["saturation_rps"] == {"window": 330.0, "adaptive": 360.0}
    assert fast["saturation_rps_by_round"] == {"window": [300.0, 360.0], "adaptive": [330.0, 390.0]}
    assert fast["adaptive_vs_window_fast"] == pytest.approx(360 / 330, abs=0.001)
    assert fast["phases"] == {
        "window": ["fast-window", "fast-window-2"],
        "adaptive": ["fast-adaptive", "fast-adaptive-2"],
    }
