"""The simulator's settings: its cost model and fault injection, read from ``BATCHGATE_SIM_*``.

The simulator stands alone (``python -m batching.simulator``), so it reads its own section of
the environment; batchgate's ``Settings`` holds the same object as its ``simulator`` field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

#: Every field's variable is this prefix + the field name in upper case.
ENV_PREFIX = "BATCHGATE_SIM_"
#: The ends ``batch_outcome`` may force on Batch API jobs.
BATCH_OUTCOMES = frozenset({"succeeded", "failed", "expired"})


@dataclass(frozen=True)
class SimulatorSettings:
    """Cost model and fault injection of the embedded Gemini-compatible simulator."""

    host: str = "127.0.0.1"
    port: int = 8090
    #: Fixed cost of every generateContent call.
    overhead_ms: float = 150.0
    #: Cost per input token (prompt, system text, packed items).
    per_input_token_ms: float = 0.005
    #: Cost per output token; a packed call pays for all its items' answers.
    per_output_token_ms: float = 0.2
    #: Calls served at once; further calls wait for a free slot (0 = unlimited).
    max_concurrent: int = 8
    #: Requests-per-minute quota; calls beyond it get 429 RESOURCE_EXHAUSTED (0 = none).
    rpm: int = 0
    #: Input-tokens-per-minute quota; calls beyond it get 429 RESOURCE_EXHAUSTED (0 = none).
    tpm: int = 0
    #: Requests-per-day quota, reset at midnight Pacific time as Gemini's; calls beyond it get
    #: 429 RESOURCE_EXHAUSTED with a day quota's QuotaFailure (0 = none).
    rpd: int = 0
    #: Share of calls failed at random with 429, 500 or 503.
    error_rate: float = 0.0
    #: Share of items left out of packed (JSON) answers.
    drop_item_rate: float = 0.0
    #: Items whose prompt contains this text always fail (dropped when packed, 500 alone).
    poison_marker: str = "[[sim:fail]]"
    #: An item whose prompt contains this text obeys it like an injected prompt: every id of its
    #: packed call is answered with that item's answer (a forged answer for its call-mates).
    forge_marker: str = "[[sim:forge]]"
    #: An item whose prompt contains this text gets an answer that quotes, verbatim, the prompt of
    #: every other item of its packed call (a leak of its call-mates' data).
    leak_marker: str = "[[sim:leak]]"
    #: A call that contains this text anywhere (a plain prompt, any packed item's prompt or
    #: context, the system text) is blocked as Gemini blocks an unsafe prompt: HTTP 200, no
    #: candidates, promptFeedback.blockReason SAFETY.
    block_marker: str = "[[sim:block]]"
    #: A plain JSON-mode call whose prompt contains this text is answered with text that is not
    #: JSON (cut inside a string); a packed item whose prompt contains it gets an answer its item
    #: schema rejects (a string where an object is asked), unless that schema is a string.
    badjson_marker: str = "[[sim:badjson]]"
    #: Seed of the fault-injection random generator (same seed, same faults).
    seed: int = 0
    #: Time from a Batch API job's creation to its end (``batchGenerateContent``): pending for
    #: its first quarter, then running; taken when the job is created.
    batch_turnaround_s: float = 60.0
    #: How a Batch API job ends once its turnaround is over: ``succeeded`` (every request
    #: answered, a malformed one with its own error), ``failed`` or ``expired`` (no results);
    #: applies to jobs seen to end after it is set.
    batch_outcome: str = "succeeded"
    #: Gemini's implicit cache: a call whose prompt starts with at least this many tokens a
    #: recent call sent reports them as ``cachedContentTokenCount`` (0 = no cache). 2,048 is
    #: Gemini 2.5 Flash's and Pro's minimum on Google's caching page (read 2026-10-23).
    implicit_cache_min_tokens: int = 2048
    #: How long a prompt prefix stays cached after a call last sent it.
    implicit_cache_ttl_s: float = 300.0

    def __post_init__(self) -> None:
        """Refuse an outcome no job could end with, from the environment or ``/_sim/config``."""
        if self.batch_outcome not in BATCH_OUTCOMES:
            choices = ", ".join(sorted(BATCH_OUTCOMES))
            raise ValueError(f"batch_outcome must be one of {choices}, not {self.batch_outcome!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorSettings:
        """Read ``BATCHGATE_SIM_<FIELD>`` variables (default ``os.environ``); ValueError names
        the variable whose value does not parse."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None:
                continue
            kind = hints[f.name]
            try:
                values[f.name] = kind(raw) if kind in (int, float) else raw
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        return cls(**values)
