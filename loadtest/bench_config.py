"""The benchmark's knobs (``BENCH_*``) and the Gemini-like cost model every stack gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.bench_stack import caller_overrides
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
