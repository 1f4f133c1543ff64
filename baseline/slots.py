"""The shape of the metrics' 10-second slots: what baselines and live drift are computed on.

The metrics store (``batchgate.metrics_store``) writes and reads these in Redis; the statistics
here need only their shape, so they stand apart from any store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Length of one slot in seconds.
SLOT_S = 10
#: The stages whose latency is recorded, in a request's order.
STAGES = ("queued", "batch_wait", "model", "end_to_end")


def slot_of(now: float) -> int:
    """The slot a wall-clock time falls in."""
    return int(now // SLOT_S)


@dataclass
class SlotData:
    """Everything recorded in one slot (or in the totals)."""

    histograms: dict[str, Counter[int]] = field(default_factory=lambda: {s: Counter() for s in STAGES})
    counters: Counter[str] = field(default_factory=Counter)
    batch_sizes: Counter[int] = field(default_factory=Counter)
    items_per_call: Counter[int] = field(default_factory=Counter)
    #: Largest queue depth sampled in the slot (None: not sampled).
    queue_depth: int | None = None
