"""Tasks that wait for a model's day quota to reset instead of failing (``BATCHGATE_DAY_QUOTA_ACTION=park``).

A day quota spent is no fault of the request: work that can wait (an evaluation, a nightly
summary) would rather run after midnight Pacific than be resubmitted by hand. A parked task
goes back to ``queued`` with ``parked`` (code, message, until) in its record and leaves the
worker; it re-enters the in-flight index so that the orphan sweeper, which sends again any
queued task whose message is nowhere, sends it at the reset (``TaskStore.park``), without
counting a recovery. Conversation turns are not parked: the turns after them would wait in
vain; they fail as before.
"""

from __future__ import annotations

import dataclasses
import time

from batchgate.taskstore import FAILED, QUEUED, Outcome, TaskStore
from batching.daily_quota import DAILY_QUOTA_EXHAUSTED, seconds_to_pacific_midnight


def parkable(outcome: Outcome) -> bool:
    """A failure only because a model's day quota is spent, outside a conversation."""
    error = outcome.error or {}
    return outcome.status == FAILED and error.get("code") == DAILY_QUOTA_EXHAUSTED and outcome.landing is None


def park_spent(
    store: TaskStore,
    holder: str,
    lead_s: float,
    outcomes: list[Outcome],
    start: int,
    now: float | None = None,
) -> list[Outcome]:
    """Park the outcomes from index ``start`` on that only a spent day quota failed (marking
    them ``queued`` in ``outcomes``); return the others, which are to be stored."""
    spent = [i for i in range(start, len(outcomes)) if parkable(outcomes[i])]
    if spent:
        stamp = time.time() if now is None else now
        until = stamp + seconds_to_pacific_midnight(stamp)
        why = {
            "code": DAILY_QUOTA_EXHAUSTED,
            "message": "the model's daily quota ran out; the task waits for it to reset at midnight Pacific",
            "until": round(until, 3),
        }
        parked = set(store.park([(outcomes[i].task_id, why) for i in spent], holder, lead_s, stamp))
        for i in spent:
            if outcomes[i].task_id in parked:
                outcomes[i] = dataclasses.replace(outcomes[i], status=QUEUED, error=why)
    return [o for o in outcomes[start:] if o.status != QUEUED]
