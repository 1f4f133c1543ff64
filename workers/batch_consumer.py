"""celery-batches' Batches with a per-batch deadline instead of a repeating timer.

celery-batches flushes on every ``flush_every``-th message and on a timer that repeats
every ``flush_interval`` seconds regardless of when the batch began, so a request can wait
up to a whole interval. Here both limits switch theirs off, and after each message the
pure policy ``batching.flush_policy.decide`` says flush now or wait until the deadline of
the batch's first request; a one-shot timer on the consumer's own timer wakes us then.

It also sends the task events celery-batches leaves out (``workers.task_events``), so
Flower shows every buffered request: ``task-received`` here as a message is buffered,
``task-started`` and ``task-succeeded``/``task-failed`` from the batch task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from celery_batches import Batches

from batchgate.taskstore import Outcome
from batching.flush_policy import FlushLimits, FlushNow, WaitUntil, decide
from workers import task_events
from workers.task_events import TaskEvent

log = logging.getLogger(__name__)

#: Large enough that celery-batches' own size and timer triggers never fire.
_NEVER_BY_COUNT = 2**62
_NEVER_BY_TIMER = 24 * 3600.0


class WindowedBatches(Batches):
    """Batches flushed by size or by a window measured from each batch's first request."""

    abstract = True
    flush_every = _NEVER_BY_COUNT
    flush_interval = _NEVER_BY_TIMER
    flush_limits = FlushLimits(max_size=32, window_s=0.05)

    def __init__(self) -> None:
        super().__init__()
        self._first_arrival: float | None = None
        self._deadline_timer: Any = None
        #: Wall-clock arrival time per task id, read by the batch for its timings.
        self.arrivals: dict[str, float] = {}
        #: The worker's consumer (set by Strategy): its thread owns the event dispatcher.
        self._consumer: Any = None

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Callable[..., None]:
        buffer_message = super().Strategy(task, app, consumer)
        timer = consumer.timer
        self._consumer = consumer

        def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> None:
            task_id = message.headers.get("id") if message.headers else None
            if task_id:
                self.arrivals[task_id] = time.time()
            buffer_message(message, body, ack, reject, callbacks, **kw)
            if task_id and self.task_events_on():
                # Before the flush decision, so the batch's task-started can only follow it.
                self._send_events(lambda: [task_events.received(message.headers, message.payload)])
            now = time.monotonic()
            if self._first_arrival is None:
                self._first_arrival = now
            self._evaluate(timer, now)

        return on_message

    def task_events_on(self) -> bool:
        """Whether the worker sends task events now (``-E``, or switched on later by Flower)."""
        consumer = self._consumer
        if not self.send_events or consumer is None:
            return False
        return task_events.task_events_on(consumer.event_dispatcher)

    def emit_started(self, task_ids: Sequence[str]) -> None:
        """From a batch thread: ``task-started`` for the requests of a batch about to run."""
        if self.task_events_on():
            self._hand_to_consumer(task_events.started(task_ids))

    def emit_finished(self, task_ids: Sequence[str], outcomes: Sequence[Outcome], runtime: float) -> None:
        """From a batch thread: ``task-succeeded``/``task-failed`` per request, from the batch's outcomes."""
        if self.task_events_on():
            self._hand_to_consumer(task_events.finished(task_ids, outcomes, runtime))

    def emit_crashed(self, task_ids: Sequence[str], exc: BaseException) -> None:
        """From a batch thread: ``task-failed`` for every request of a batch that raised."""
        if self.task_events_on():
            self._hand_to_consumer(task_events.crashed(task_ids, exc))

    def _hand_to_consumer(self, events: list[TaskEvent]) -> None:
        """Send ``events`` built in a batch thread from the consumer's own thread.

        The consumer's EventDispatcher is not thread-safe (its task-event buffer is a plain
        list that the event loop flushes), so a batch thread never touches it. Instead
        ``consumer.call_soon`` (the hub's locked ready-queue, which also wakes its poller:
        the path Celery's own acks from pool threads take) runs the sends on the event loop,
        where they join that buffer and leave as one ``task.multi`` PUBLISH per loop turn.
        No extra connection, no round trip in the batch thread, and a request's events stay
        in order: received, started and finished all pass through the same buffer. (A
        Dispatcher per thread would need a pooled connection and PUBLISHes of its own.)
        """
        if events:
            self._consumer.call_soon(self._send_events, lambda: events)

    def _send_events(self, build: Callable[[], Iterable[TaskEvent | None]]) -> None:
        # Runs on the consumer's thread, and builds the events inside the ``try``: an error
        # here would stop the event loop, and events are only telemetry, so it is logged.
        try:
            dispatcher = self._consumer.event_dispatcher
            if task_events.task_events_on(dispatcher):
                task_events.send(dispatcher, (e for e in build() if e is not None))
        except Exception:
            log.exception("could not send task events")

    def _evaluate(self, timer: Any, now: float) -> None:
        decision = decide(self._buffer.qsize(), self._first_arrival, now, self.flush_limits)
        if isinstance(decision, FlushNow):
            self._cancel_deadline()
            self._first_arrival = None
            self._do_flush()
        elif isinstance(decision, WaitUntil) and self._deadline_timer is None:
            delay = max(0.0, decision.deadline - now)
            self._deadline_timer = timer.call_after(delay, lambda: self._on_deadline(timer))

    def _on_deadline(self, timer: Any) -> None:
        self._deadline_timer = None
        self._evaluate(timer, time.monotonic())

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
