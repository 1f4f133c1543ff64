"""When to try a request again, and how long to wait first (pure, no clock)."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Answers worth another try: a rate limit (not a spent budget: it lasts till next month),
#: and a gateway or replica that is briefly away.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, honouring ``Retry-After`` up to ``max_s``."""

    attempts: int = 5
    base_s: float = 0.25
    max_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_s)
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)


def retried(status: int, code: str) -> bool:
    """Whether an answer of ``status`` and error ``code`` is worth another try."""
    return status in RETRIED_STATUSES and code != "budget_exhausted"


#: The clients' default: five tries, waits from a quarter second up to 30 s.
DEFAULT_BACKOFF = Backoff()
