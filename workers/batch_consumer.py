"""celery-batches' Batches with our own flush policy instead of a repeating timer.

celery-batches flushes on every ``flush_every``-th message and on a timer that repeats
every ``flush_interval`` seconds regardless of when the batch began, so a request can wait
up to a whole interval, and it cannot flush "when a slot frees up". Here both of its
triggers are switched off; after each message, and whenever a batch finishes, the pure
policy ``batching.flush_policy.decide`` (window or adaptive mode) says flush now or wait
until a deadline; a one-shot timer on the consumer's own timer wakes us then. Batches in
flight are counted on the consumer thread: a batch thread reports its end through
``consumer.call_soon``.

It also sends the task events celery-batches leaves out (``workers.task_events``), so
Flower shows every buffered request: ``task-received`` when a batch is handed to the pool
(stamped with each request's arrival), ``task-started`` and ``task-succeeded``/
``task-failed`` from the batch task, gathered in an outbox and sent a few times a second
(``workers.event_outbox``). And it acknowledges a batch's messages together
(``workers.bulk_ack``).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task

from batchgate.taskstore import Outcome
from batching.call_costs import CallCostModel
from batching.call_pacer import Pacer
from batching.flush_policy import (
    IDLE,
    ArrivalRate,
    CallPressure,
    FlushLimits,
    FlushNow,
    WaitUntil,
    decide,
)
from batching.slot_tuner import SlotTuner
from workers import task_events
from workers.bulk_ack import acknowledge_all
from workers.cpu_busy import SAMPLE_EVERY_S, CpuBusy
from workers.event_outbox import EventOutbox
from workers.leases import LeaseBook
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
    #: Where this worker records the messages it holds (None: no leases, e.g. in tests).
    leases: LeaseBook | None = None
    #: What a batch costs this worker's CPU (adaptive mode weighs it; None: nothing measured).
    call_costs: CallCostModel | None = None
    #: Where this worker's model calls take their quota turns (adaptive mode: a batch fills
    #: while the next turn is still ahead; None: no quota).
    pacer: Pacer | None = None
    #: Batches this worker's pool runs at once: its share of the cluster's adaptive slots
    #: never exceeds it (None: no cap).
    pool_size: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self._first_arrival: float | None = None
        #: Sum of the pending requests' arrival times (their summed wait is pending * now - it).
        self._arrival_sum = 0.0
        #: How busy this worker's CPU is lately (sampled on the consumer's timer in adaptive mode).
        self.busy = CpuBusy()
        #: Requests arriving per second lately (adaptive mode: does waiting stand to pay?).
        self.arrival_rate = ArrivalRate()
        self._deadline_timer: Any = None
        self._deadline_at = 0.0
        #: Wall-clock arrival time per task id, read by the batch for its timings.
        self.arrivals: dict[str, float] = {}
        #: The worker's consumer (set by Strategy): its event dispatcher says if events are on.
        self._consumer: Any = None
        self._timer: Any = None
        #: Batches handed to the pool and not yet done (touched on the consumer thread only).
        self._in_flight = 0
        #: Flush limits by this worker's share of the adaptive slots (``_limits``).
        self._shares: dict[int, FlushLimits] = {}
        #: Adaptive mode: the limit learned above that share from the batches' latency.
        self.slot_tuner = SlotTuner()
        #: The limit each batch in flight started under, by its first task id.
        self._started_under: dict[str, int] = {}
        #: Task ids whose batch could not store its answers: not acknowledged but given back.
        self._unstored: set[str] = set()
        self._unstored_lock = threading.Lock()
        #: Where this worker's task events gather before they are sent (created on first use).
        self._outbox: EventOutbox | None = None
        self._outbox_lock = threading.Lock()
        #: The clock windows and deadlines are measured on (tests pass their own time in).
        self.clock: Callable[[], float] = time.monotonic

    def Strategy(self, task: Any, app: Any, consumer: Any) -> Callable[..., None]:
        buffer_message = super().Strategy(task, app, consumer)
        timer = consumer.timer
        self._consumer = consumer
        self._timer = timer
        if self.flush_limits.max_in_flight is not None:
            timer.call_repeatedly(SAMPLE_EVERY_S, self.busy.sample)

        def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> None:
            task_id = message.headers.get("id") if message.headers else None
            if task_id:
                self.arrivals[task_id] = time.time()
                if self.leases is not None:
                    self.leases.take(message.delivery_tag, task_id)
            buffer_message(message, body, ack, reject, callbacks, **kw)
            now = self.clock()
            if self._first_arrival is None:
                self._first_arrival = now
            self._arrival_sum += now
            self.arrival_rate.arrived(now)
            self._evaluate(timer, now)

        return on_message

    def flush(self, requests: Collection[Any]) -> Any:
        """Hand a batch to the pool, after telling Flower its requests were received."""
        if self.task_events_on():
            self._publish_events(lambda: [task_events.received(r, self.arrivals.get(r.id)) for r in requests])
        self._in_flight += 1
        requests = list(requests)
        if requests and self.flush_limits.max_in_flight is not None:
            self._started_under[requests[0].id] = self._limits().max_in_flight or 0
        # As celery-batches' own flush, but a batch's late acknowledgements go in one round
        # trip (workers.bulk_ack). Our task acknowledges late; early ones are kept for safety.
        early = [r for r in requests if not r.task.acks_late]
        late = [r for r in requests if r.task.acks_late]
        return self._pool.apply_async(
            apply_batches_task,
            (self, ([SimpleRequest.from_request(r) for r in requests],), 0, None),
            accept_callback=lambda pid, accepted_at: self.settle(early),
            callback=lambda result: self.settle(late),
        )

    def keep_unacknowledged(self, task_ids: Collection[str]) -> None:
        """From a batch thread: these requests' answers could not be stored (Redis unreachable)."""
        with self._unstored_lock:
            self._unstored.update(task_ids)

    def settle(self, requests: Collection[Any]) -> None:
        """Acknowledge a finished batch's messages (one round trip) and release their leases;
        a message whose answer could not be stored is given back to the queue instead."""
        with self._unstored_lock:
            unstored = {r.id for r in requests} & self._unstored
            self._unstored -= unstored
        acknowledge_all([r for r in requests if r.id not in unstored])
        for request in (r for r in requests if r.id in unstored):
            try:
                request.reject(requeue=True)  # back on the queue, first in line
            except Exception:  # Redis still down: the broker's visibility timeout is left
                log.exception(
                    "could not give back task %s; it returns after the visibility timeout", request.id
                )
        if self.leases is not None:
            self.leases.release(r.message.delivery_tag for r in requests if r.acknowledged)

    def batch_done(self, task_ids: Sequence[str] = (), seconds: float = 0.0, generated: int = 0) -> None:
        """From a batch thread, when its batch of ``task_ids`` is finished after ``seconds``,
        having generated ``generated`` tokens: free its slot (and tell the slot tuner) on
        the consumer thread."""
        if self._consumer is not None:
            self._consumer.call_soon(lambda: self._release_slot(task_ids, seconds, generated))

    def _release_slot(self, task_ids: Sequence[str] = (), seconds: float = 0.0, generated: int = 0) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        started_under = self._started_under.pop(task_ids[0], None) if task_ids else None
        if started_under is not None:
            floor, cap = self._floor()
            before = self.slot_tuner.limit(floor, cap)
            if self.pacer is not None:
                self.slot_tuner.turns(self.pacer.turns_taken, self.pacer.turns_waited)
            work = max(generated, len(task_ids))
            self.slot_tuner.finished(self.clock(), started_under, seconds, work, floor, cap)
            after = self.slot_tuner.limit(floor, cap)
            if after != before:
                log.info("batches in flight: %d -> %d (share of the adaptive slots %d)", before, after, floor)
        if self._timer is not None:
            self._evaluate(self._timer, self.clock())

    def task_events_on(self) -> bool:
        """Whether the worker sends task events now (``-E``, or switched on later by Flower)."""
        consumer = self._consumer
        if not self.send_events or consumer is None:
            return False
        return task_events.task_events_on(consumer.event_dispatcher)

    def emit_started(self, task_ids: Sequence[str]) -> None:
        """From a batch thread: ``task-started`` for the requests of a batch about to run."""
        if self.task_events_on():
            self._publish_events(lambda: task_events.started(task_ids))

    def emit_finished(self, task_ids: Sequence[str], outcomes: Sequence[Outcome], runtime: float) -> None:
        """From a batch thread: ``task-succeeded``/``task-failed`` per request, from the batch's outcomes."""
        if self.task_events_on():
            self._publish_events(lambda: task_events.finished(task_ids, outcomes, runtime))

    def emit_crashed(self, task_ids: Sequence[str], exc: BaseException) -> None:
        """From a batch thread: ``task-failed`` for every request of a batch that raised."""
        if self.task_events_on():
            self._publish_events(lambda: task_events.crashed(task_ids, exc))

    def _publish_events(self, build: Callable[[], Sequence[TaskEvent]]) -> None:
        """Queue a batch's events for the worker's outbox; safe from the consumer's and batch threads.

        Events are telemetry: an error is logged, never raised into the batch or the loop.
        """
        # Thread-safety: the consumer's EventDispatcher is not thread-safe, so this never
        # touches it: the outbox's own thread publishes through ``task_events.publish`` (a
        # Dispatcher of its own on a pooled producer), a few times a second for all batches
        # together (workers.event_outbox says why and what it saves).
        try:
            self._events_outbox().put(build())
        except Exception:
            log.exception("could not queue task events")

    def _events_outbox(self) -> EventOutbox:
        with self._outbox_lock:
            if self._outbox is None:
                hostname = self._consumer.hostname
                self._outbox = EventOutbox(lambda events: task_events.publish(self.app, hostname, events))
                atexit.register(self._outbox.close)
            return self._outbox

    def _evaluate(self, timer: Any, now: float) -> None:
        pending = self._buffer.qsize()
        limits, pressure = self._limits(), self._pressure(now)
        decision = decide(
            pending,
            self._first_arrival,
            now,
            limits,
            self._in_flight,
            waited_s=pending * now - self._arrival_sum,
            pressure=pressure,
        )
        if isinstance(decision, WaitUntil) and self._in_flight >= (limits.max_in_flight or math.inf):
            self.slot_tuner.waited_for_slot()
        if isinstance(decision, FlushNow):
            self._cancel_deadline()
            self._first_arrival = None
            self._arrival_sum = 0.0
            self._do_flush()
        elif isinstance(decision, WaitUntil) and (
            self._deadline_timer is None or decision.deadline < self._deadline_at
        ):
            # A newcomer may bring the decision forward (adaptive mode shares the wait owed).
            self._cancel_deadline()
            self._deadline_at = decision.deadline
            delay = max(0.0, decision.deadline - now)
            self._deadline_timer = timer.call_after(delay, lambda: self._on_deadline(timer))

    def _floor(self) -> tuple[int, int | None]:
        """This worker's share of the cluster's adaptive slots, and its pool's size: the
        model's concurrent calls are the whole cluster's, so each of the live workers (as
        of the last lease beat) runs at least its share, and a lone survivor all of them."""
        slots, live = (
            self.flush_limits.max_in_flight or 1,
            self.leases.live_holders if self.leases is not None else 1,
        )
        share = -(-slots // max(live, 1))
        return (min(share, self.pool_size), self.pool_size) if self.pool_size is not None else (share, None)

    def _limits(self) -> FlushLimits:
        """The flush limits with this worker's limit on batches in flight: its share of the
        cluster's adaptive slots, or more where the slot tuner learned the model serves more
        (``batching.slot_tuner``), never more than its pool runs."""
        limits = self.flush_limits
        if limits.max_in_flight is None:
            return limits
        share = self.slot_tuner.limit(*self._floor())
        if share not in self._shares:
            self._shares[share] = dataclasses.replace(limits, max_in_flight=share)
        return self._shares[share]

    def _pressure(self, now: float) -> CallPressure:
        """What one more call costs now; window mode never weighs it, so it reads nothing."""
        if self.flush_limits.max_in_flight is None:
            return IDLE
        fixed_s = self.call_costs.fixed_s if self.call_costs else 0.0
        # The engine's pacer keeps time.monotonic(); ``now`` is this consumer's clock.
        ahead = self.pacer.next_turn_at - time.monotonic() if self.pacer is not None else 0.0
        turn_at = now + ahead if ahead > 0 else -math.inf
        return CallPressure(fixed_s, self.busy.value, self.arrival_rate.at(now), turn_at)

    def _on_deadline(self, timer: Any) -> None:
        self._deadline_timer = None
        self._evaluate(timer, self.clock())

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
