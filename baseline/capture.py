"""Build a PerformanceBaseline from the metrics' 10-second slots over a chosen window.

Pure: the slots (``baseline.slots.SlotData``) are read by the caller, so the same
function serves ``make baseline`` (after a steady healthy-load run) and a capture from the
live metrics of a running cluster. Only whole slots inside ``[start, end)`` are used, so a
slot half outside the window (ramp-up, the current slot) never leaks in.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from baseline.histogram import merge
from baseline.model import PerformanceBaseline, StageLatency
from baseline.slots import SLOT_S, STAGES, SlotData

REPO = Path(__file__).resolve().parent.parent


class CaptureError(ValueError):
    """The window holds too little to be a baseline."""


def whole_slots(start: float, end: float) -> list[int]:
    """Slots lying entirely within ``[start, end)``."""
    return list(range(math.ceil(start / SLOT_S), math.floor(end / SLOT_S)))


def capture(
    slots: Mapping[int, SlotData],
    start: float,
    end: float,
    *,
    settings: Mapping[str, Any],
    load: Mapping[str, Any],
    created_at: float,
    min_samples: int = 1,
    inflection: Mapping[str, Any] | None = None,
    git_revision: str | None = None,
) -> PerformanceBaseline:
    """The baseline of the whole slots of ``[start, end)``; at least ``min_samples`` requests."""
    chosen_ids = whole_slots(start, end)
    if not chosen_ids:
        raise CaptureError(f"the window [{start:.0f}, {end:.0f}) holds no whole {SLOT_S}-second slot")
    chosen = [slots[s] for s in chosen_ids if s in slots]
    stages = {stage: StageLatency.of(merge(d.histograms[stage] for d in chosen)) for stage in STAGES}
    samples = stages["end_to_end"].count
    if samples < min_samples:
        raise CaptureError(f"only {samples} requests finished in the window; a baseline needs {min_samples}")
    seconds = len(chosen_ids) * SLOT_S
    finished = sum(d.counters.get(name, 0) for d in chosen for name in ("succeeded", "failed", "cached"))
    tokens = sum(d.counters.get("input_tokens", 0) + d.counters.get("output_tokens", 0) for d in chosen)
    failed = sum(d.counters.get("failed", 0) for d in chosen)
    return PerformanceBaseline(
        created_at=created_at,
        git_revision=git_revision if git_revision is not None else current_git_revision(),
        settings=dict(settings),
        load={
            **load,
            "window_s": float(seconds),
            "window_start": float(chosen_ids[0] * SLOT_S),
            "window_end": float((chosen_ids[-1] + 1) * SLOT_S),
            "failed": failed,
        },
        stages=stages,
        throughput_rps=round(finished / seconds, 3),
        tokens_per_s=round(tokens / seconds, 3),
        batch_sizes=dict(merge(d.batch_sizes for d in chosen)),
        inflection=inflection,
    )


def latency_settings(settings: Any) -> dict[str, Any]:
    """The settings that shape latency, from a ``batchgate.settings.Settings``."""
    sim = settings.simulator
    return {
        "model": settings.gemini.model,
        "model_backend": "simulator" if settings.gemini.model_base_url else "gemini",
        "flush_mode": settings.consumer.flush_mode,
        "batch_max_size": settings.consumer.batch_max_size,
        "batch_window_ms": settings.consumer.batch_window_ms,
        "adaptive_slots": settings.consumer.adaptive_slots,
        "max_items_per_call": settings.packing.max_items_per_call,
        "max_concurrent_calls": settings.gemini.max_concurrent_calls,
        "model_rpm": settings.gemini.model_rpm,
        "strategy": settings.packing.strategy,
        "api_replicas": len(settings.api.api_ports),
        "worker_concurrency": settings.consumer.worker_concurrency,
        "simulator_cost_model": {
            "overhead_ms": sim.overhead_ms,
            "per_input_token_ms": sim.per_input_token_ms,
            "per_output_token_ms": sim.per_output_token_ms,
            "max_concurrent": sim.max_concurrent,
            "rpm": sim.rpm,
        }
        if settings.gemini.model_base_url
        else None,
    }


def current_git_revision() -> str:
    """The checkout's commit (with ``-dirty`` if it has changes), or ``unknown``."""
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return rev.stdout.strip() if rev.returncode == 0 and rev.stdout.strip() else "unknown"
