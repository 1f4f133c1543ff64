"""Re-enqueue requests that went missing between the API and a worker.

The broker redelivers what a dead worker held once the visibility timeout passes, but a
message can still vanish: a worker killed between popping it and recording it as unacked,
or a Redis that lost its last writes. Every unfinished task is in the store's in-flight
index; a task still there ``orphan_after_s`` after submission (or its last recovery) is
published again with the same id. Results are written once, so a message that was only
late, not lost, costs a duplicate model call at worst, never a second answer. After
``max_recoveries`` re-enqueues the task is failed, so every accepted request ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from batchgate.taskstore import FAILED, TERMINAL, Outcome, TaskStore
from workers.publisher import Publisher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    overdue: int = 0
    requeued: int = 0
    failed: int = 0
    #: Ids dropped from the index: finished (by a late delivery) or expired.
    forgotten: int = 0


def sweep(
    store: TaskStore, publisher: Publisher, now: float, orphan_after_s: float, max_recoveries: int
) -> SweepReport:
    """Re-enqueue (or finally fail) the tasks overdue at ``now``."""
    overdue = store.overdue(now - orphan_after_s)
    gone = [task_id for task_id, record in overdue if record is None or record.get("status") in TERMINAL]
    store.forget(gone)
    requeued = failed = 0
    for task_id, record in overdue:
        if record is None or record.get("status") in TERMINAL:
            continue
        if (record.get("recoveries") or 0) >= max_recoveries or not isinstance(record.get("request"), dict):
            error = {
                "code": "lost_in_transit",
                "message": f"the request was re-enqueued {max_recoveries} times without an answer; resubmit it",
            }
            failed += len(store.finish([Outcome(task_id, FAILED, None, error, {})], now))
            continue
        count = store.note_recovery(task_id, now)  # first: a crash here means a retry, not a loss
        publisher.publish(task_id, record["request"], float(record.get("submitted_at") or now))
        log.warning("re-enqueued task %s (%s, recovery %d)", task_id, record.get("status"), count)
        requeued += 1
    return SweepReport(overdue=len(overdue), requeued=requeued, failed=failed, forgotten=len(gone))
