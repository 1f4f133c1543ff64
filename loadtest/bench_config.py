"""The benchmark's knobs (``BENCH_*``), its cost models, and the stacks one run starts, in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchgate.settings_sections import ConsumerSettings
from loadtest.bench_stack import caller_overrides
from stack.programs import REPO

#: The ``model`` of a phase (recorded in every phase dict): what the simulator costs.
GEMINI_MODEL = "gemini-like"
FAST_MODEL = "instant"
#: The flush modes (``BATCHGATE_FLUSH_MODE``) the benchmark compares.
FLUSH_MODES = ("window", "adaptive")

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
#: The fast model: the simulator answers at once, with no slot limit and no quota, so what is
#: left of a request's time and of the machine's CPU is the stack's own.
INSTANT = {
    "BATCHGATE_SIM_OVERHEAD_MS": "0",
    "BATCHGATE_SIM_PER_INPUT_TOKEN_MS": "0",
    "BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS": "0",
    "BATCHGATE_SIM_MAX_CONCURRENT": "0",
    "BATCHGATE_SIM_RPM": "0",
    "BATCHGATE_MODEL_RPM": "0",
}
UNBATCHED = {"BATCHGATE_BATCH_MAX_SIZE": "1"}
#: The stacks of the fast-model pair's first round, one per flush mode (later rounds add
#: ``-<round>``).
FAST_STACKS = {mode: f"fast-{mode}" for mode in FLUSH_MODES}


def fast_stack_name(mode: str, round_: int) -> str:
    """The fast-model stack of ``mode`` in round ``round_`` (from 1)."""
    return FAST_STACKS[mode] if round_ == 1 else f"{FAST_STACKS[mode]}-{round_}"


def default_flush_mode() -> str:
    """The flush mode a deployment gets when it sets none (``ConsumerSettings``' default)."""
    return ConsumerSettings().flush_mode


def other_flush_mode(mode: str) -> str:
    """The mode the rounds' mode is compared with: window against adaptive, adaptive against window."""
    return "adaptive" if mode == "window" else "window"


@dataclass(frozen=True)
class StackPlan:
    """One stack of a run: its name (that of its saturation phase), model, settings and load."""

    name: str
    model: str
    settings: Mapping[str, str]
    clients: int
    #: Run the low-load phase (requests one at a time) before saturation.
    low_load: bool
    #: Clients send one HTTP request per task (``POST /api/v1/task?wait=``) instead of
    #: submitting and long-polling: the fast pair, as the issue that asked for it measured.
    one_request_per_task: bool = False


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
    #: The rounds' flush mode (``BATCHGATE_FLUSH_MODE`` if the caller sets it, else the default).
    flush_mode: str = field(default_factory=default_flush_mode)
    #: Run the extra flush-mode stack (the other mode: low load and saturation) after the rounds.
    adaptive: bool = True
    #: Run the fast-model pair (``fast-window``, ``fast-adaptive``) after that.
    fast: bool = True
    #: Closed-loop clients of the fast-model saturation phases.
    fast_clients: int = 64
    #: Rounds of the fast pair, in alternating order (window, adaptive, adaptive, window…), so a
    #: machine whose speed drifts during the run (measured: up to 35 %) weighs on both modes.
    fast_rounds: int = 2
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
            flush_mode=environ.get("BATCHGATE_FLUSH_MODE", default.flush_mode),
            adaptive=environ.get("BENCH_ADAPTIVE", "1") not in ("0", "false", "no"),
            fast=environ.get("BENCH_FAST", "1") not in ("0", "false", "no"),
            fast_clients=int(environ.get("BENCH_FAST_CLIENTS", default.fast_clients)),
            fast_rounds=int(environ.get("BENCH_FAST_ROUNDS", default.fast_rounds)),
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
        if config.fast and config.fast_rounds < 1:
            raise ValueError("BENCH_FAST_ROUNDS must be at least 1")
        if config.fast and config.fast_clients < tenants[0]:
            raise ValueError("BENCH_FAST_CLIENTS must be at least the first of BENCH_TENANTS")
        if config.flush_mode not in FLUSH_MODES:
            raise ValueError(f"BATCHGATE_FLUSH_MODE must be one of {FLUSH_MODES}, not {config.flush_mode!r}")
        return config

    @property
    def compared_mode(self) -> str:
        """The flush mode of the extra stack, which is also its name: the one the rounds do not run."""
        return other_flush_mode(self.flush_mode)

    def plan(self) -> list[StackPlan]:
        """Every stack of a run, in order; each sets its flush mode explicitly.

        The rounds (``batched-1``, ``unbatched-1``, ``batched-2`` …) run ``flush_mode``; the
        extra stack (``adaptive`` or ``window``) the other mode; the fast pair the instant model.
        """

        def settings(mode: str, *extra: Mapping[str, str]) -> dict[str, str]:
            merged = dict(self.stack_settings)
            for overrides in extra:
                merged.update(overrides)
            merged["BATCHGATE_FLUSH_MODE"] = mode
            return merged

        plans: list[StackPlan] = []
        for n in range(1, self.rounds + 1):
            plans.append(
                StackPlan(f"batched-{n}", GEMINI_MODEL, settings(self.flush_mode), self.clients, n == 1)
            )
            plans.append(
                StackPlan(
                    f"unbatched-{n}", GEMINI_MODEL, settings(self.flush_mode, UNBATCHED), self.clients, False
                )
            )
        if self.adaptive:
            mode = self.compared_mode
            plans.append(StackPlan(mode, GEMINI_MODEL, settings(mode), self.clients, True))
        if self.fast:
            for round_ in range(1, self.fast_rounds + 1):
                modes = FLUSH_MODES if round_ % 2 else tuple(reversed(FLUSH_MODES))
                plans += [
                    StackPlan(
                        fast_stack_name(mode, round_),
                        FAST_MODEL,
                        settings(mode, INSTANT),
                        self.fast_clients,
                        round_ == 1,
                        True,
                    )
                    for mode in modes
                ]
        return plans


def _counts(text: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """``"1,8"`` (or ``"1 8"``) as ``(1, 8)``; empty: ``default``."""
    values = text.replace(",", " ").split()
    return tuple(int(v) for v in values) if values else default
