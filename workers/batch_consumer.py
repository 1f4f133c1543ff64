"""celery-batches' Batches with a per-batch deadline instead of a repeating timer.

celery-batches flushes on every ``flush_every``-th message and on a timer that repeats
every ``flush_interval`` seconds regardless of when the batch began, so a request can wait
up to a whole interval. Here both limits switch theirs off, and after each message the
pure policy ``batching.flush_policy.decide`` says flush now or wait until the deadline of
the batch's first request; a one-shot timer on the consumer's own timer wakes us then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery_batches import Batches

from batching.flush_policy import FlushLimits, FlushNow, WaitUntil, decide

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

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Callable[..., None]:
        buffer_message = super().Strategy(task, app, consumer)
        timer = consumer.timer

        def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> None:
            task_id = message.headers.get("id") if message.headers else None
            if task_id:
                self.arrivals[task_id] = time.time()
            buffer_message(message, body, ack, reject, callbacks, **kw)
            now = time.monotonic()
            if self._first_arrival is None:
                self._first_arrival = now
            self._evaluate(timer, now)

        return on_message

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
