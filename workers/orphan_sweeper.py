"""Re-enqueue requests whose message went missing between the API and a worker.

A dead worker's messages come back through its leases within seconds (``workers.leases``),
and the broker's visibility timeout is the last resort; a message can still vanish: a
replica killed between writing a record and publishing it, a worker killed between popping
a message and recording it, a Redis that lost its last writes. Every unfinished task is in
the store's in-flight index, scored by submission (or last recovery) time. A task still
there ``orphan_after_s`` later is lost only if its message can be nowhere:

- not held by a live worker (buffered or running: its lease), nor running under a live
  worker's claim;
- not waiting in the queue: the queue is first in, first out, so a task older than the
  oldest message now in the queue is not in it. A backlog (after an outage, say) is left to
  drain: re-enqueueing it would only double it past backpressure, and count as recoveries.

A lost task is published again with the same id (results are written once, so a message
that was only late costs a duplicate model call at worst, never a second answer). After
``max_recoveries`` re-enqueues it is failed, so every accepted request ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from batchgate.broker import Publisher
from batchgate.taskstore import FAILED, RUNNING, TERMINAL, Outcome, TaskStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    overdue: int = 0
    requeued: int = 0
    failed: int = 0
    #: Ids dropped from the index: finished (by a late delivery) or expired.
    forgotten: int = 0
    #: Overdue tasks left alone: held or run by a live worker, or waiting in the queue.
    waiting: int = 0


@dataclass(frozen=True)
class Whereabouts:
    """Where an unfinished task's message may be, read once per sweep."""

    #: Task ids held (leased) or run (claimed) by live workers.
    held: Callable[[], set[str]]
    #: The id of the task whose message is next in line in the queue (None: empty queue).
    oldest_queued: Callable[[], str | None]


def sweep(
    store: TaskStore,
    publisher: Publisher,
    now: float,
    orphan_after_s: float,
    max_recoveries: int,
    whereabouts: Whereabouts | None = None,
) -> SweepReport:
    """Re-enqueue (or finally fail) the tasks overdue at ``now`` whose message is lost."""
    overdue = store.overdue(now - orphan_after_s)
    gone = [task_id for task_id, record, _ in overdue if record is None or record.get("status") in TERMINAL]
    store.forget(gone)
    pending = [(t, r, e) for t, r, e in overdue if r is not None and r.get("status") not in TERMINAL]
    if not pending:
        return SweepReport(overdue=len(overdue), forgotten=len(gone))
    held = whereabouts.held() if whereabouts else set()
    queue_since = _queued_since(store, whereabouts)
    requeued = failed = waiting = 0
    for task_id, record, entered in pending:
        if task_id in held or (queue_since is not None and entered >= queue_since):
            waiting += 1  # with a live worker, or possibly in the queue behind others
            continue
        if record.get("parked") and isinstance(record.get("request"), dict):
            # Waited for a model's day quota to reset (workers.parking): due now, no recovery.
            store.unpark(task_id, now)
            publisher.publish(task_id, record["request"], float(record.get("submitted_at") or now))
            log.info("sent parked task %s again: the day quota it waited for has reset", task_id)
            requeued += 1
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
        state = "claimed by a dead worker" if record.get("status") == RUNNING else "queued"
        log.warning("re-enqueued task %s (%s, recovery %d)", task_id, state, count)
        requeued += 1
    return SweepReport(
        overdue=len(overdue), requeued=requeued, failed=failed, forgotten=len(gone), waiting=waiting
    )


def _queued_since(store: TaskStore, whereabouts: Whereabouts | None) -> float | None:
    """The in-flight time of the task next in line (None: nothing waits in the queue); any
    task entered at or after it may still be waiting behind it."""
    if whereabouts is None:
        return None
    oldest = whereabouts.oldest_queued()
    if oldest is None:
        return None
    entered = store.entered_at(oldest)
    return float("-inf") if entered is None else entered
