"""The simulator's cost model: how long a call takes and whether the quota admits it.

Pure functions and a window object that takes ``now`` as an argument, so both are tested
without sleeping.
"""

from __future__ import annotations

import math
from collections import deque

from batching.simulator.settings import SimulatorSettings

QUOTA_WINDOW_S = 60.0


def call_latency_ms(config: SimulatorSettings, prompt_tokens: int, output_tokens: int) -> float:
    """Return the time one call holds a slot: overhead plus per-token input and output costs."""
    return (
        config.overhead_ms
        + prompt_tokens * config.per_input_token_ms
        + output_tokens * config.per_output_token_ms
    )


def retry_delay_s(wait_s: float) -> int:
    """Round a wait up to the whole seconds a RetryInfo announces (at least one)."""
    return max(1, math.ceil(wait_s))


class QuotaWindow:
    """Requests-per-minute quota over a sliding 60 s window of admission times."""

    def __init__(self, window_s: float = QUOTA_WINDOW_S) -> None:
        self.window_s = window_s
        self._admitted: deque[float] = deque()

    def admit(self, now: float, rpm: int) -> float:
        """Admit one call at ``now`` and return 0.0, or return the seconds until one could be.

        ``rpm`` is passed per call so a limit changed at run time applies at once; 0 = no quota
        (nothing is recorded, so turning a quota on starts from an empty window).
        """
        if rpm <= 0:
            return 0.0
        while self._admitted and self._admitted[0] <= now - self.window_s:
            self._admitted.popleft()
        if len(self._admitted) < rpm:
            self._admitted.append(now)
            return 0.0
        # A slot frees when enough of the oldest admissions leave the window to go below rpm.
        frees_at = self._admitted[len(self._admitted) - rpm] + self.window_s
        return max(frees_at - now, 0.0)

    def clear(self) -> None:
        """Forget every admission (``POST /_sim/reset``)."""
        self._admitted.clear()

    def __len__(self) -> int:
        return len(self._admitted)


def stream_delays_ms(
    config: SimulatorSettings, prompt_tokens: int, output_tokens: int, piece_lengths: list[int]
) -> list[float]:
    """Return the pause before each streamed chunk: input cost first, output cost spread by length.

    The pauses add up to ``call_latency_ms``, so streaming costs what the plain call costs.
    """
    total_chars = sum(piece_lengths) or 1
    output_ms = output_tokens * config.per_output_token_ms
    delays = [output_ms * length / total_chars for length in piece_lengths]
    if delays:
        delays[0] += config.overhead_ms + prompt_tokens * config.per_input_token_ms
    return delays
