"""Fault injection: random call errors and dropped packed items, from one seeded generator.

Every random decision goes through one ``random.Random(seed)``, so a seed replays the same
faults for the same sequence of calls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

#: HTTP status and google.rpc status of the errors a call can fail with at random.
INJECTED_ERRORS = (
    (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    (500, "INTERNAL", "An internal error has occurred. Please retry or report."),
    (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
)
#: RetryInfo delay announced with injected 429s.
INJECTED_RETRY_DELAY_S = 1


@dataclass(frozen=True)
class InjectedError:
    """A failure the simulator answers with instead of doing the work."""

    code: int
    status: str
    message: str
    retry_delay_s: int | None = None
    #: google.rpc details other than RetryInfo (a quota's QuotaFailure).
    details: tuple[dict[str, Any], ...] = ()


class FaultInjector:
    """Decides which calls fail and which packed items are left out."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        """Restart the fault sequence from ``seed``."""
        self._rng.seed(seed)

    def call_error(self, error_rate: float) -> InjectedError | None:
        """Return the error a call fails with at ``error_rate``, or None (no draw at rate 0)."""
        if error_rate <= 0 or self._rng.random() >= error_rate:
            return None
        code, status, message = self._rng.choice(INJECTED_ERRORS)
        delay = INJECTED_RETRY_DELAY_S if code == 429 else None
        return InjectedError(code, status, f"{message} (simulated)", delay)

    def drop_item(self, drop_item_rate: float) -> bool:
        """Return True when a packed item is to be left out of the answer."""
        return drop_item_rate > 0 and self._rng.random() < drop_item_rate
