"""Task events from every thread of a worker, sent together a few times a second.

Flower needs a ``task-*`` event per request, but each publish is costly on the worker's one
bottleneck core: kombu's Redis transport builds a Redis client per fanout publish, and the
dispatcher, producer and Lamport clock add the rest (measured: 25 % of the worker's GIL time
with an instant model, at three publishes per batch of one). The outbox collects a batch's
events from the consumer and batch threads and a single daemon thread publishes what has
gathered every ``interval_s`` as one message (at most ``max_events`` events each), so the
cost is a few publishes a second whatever the load. Flower sees an event at most
``interval_s`` late; every event keeps its own timestamp, so its timeline is unchanged.
Events are telemetry: a publish that fails is logged and its events dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from workers.task_events import TaskEvent

log = logging.getLogger(__name__)

#: How often gathered events are sent.
INTERVAL_S = 0.25
#: Most events in one message (~300 bytes each); more are sent as further messages.
MAX_EVENTS = 500
#: Most events held while sending fails (beyond it the oldest are dropped, and counted).
MAX_HELD = 20_000


class EventOutbox:
    """Collects events from any thread; a daemon thread sends them every ``interval_s``."""

    def __init__(
        self,
        send: Callable[[Sequence[TaskEvent]], None],
        interval_s: float = INTERVAL_S,
        max_events: int = MAX_EVENTS,
        max_held: int = MAX_HELD,
    ) -> None:
        self._send = send
        self._interval_s = interval_s
        self._max_events = max_events
        self._max_held = max_held
        self._events: list[TaskEvent] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        #: Events dropped because too many were held.
        self.dropped = 0

    def put(self, events: Sequence[TaskEvent]) -> None:
        """Queue ``events`` (in order) for the next send; starts the sender on first use."""
        if not events:
            return
        with self._lock:
            self._events.extend(events)
            overflow = len(self._events) - self._max_held
            if overflow > 0:
                del self._events[:overflow]
                self.dropped += overflow
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="task-event-outbox", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """Send everything gathered now, ``max_events`` per message; the number of events sent."""
        with self._lock:
            events, self._events = self._events, []
        sent = 0
        for start in range(0, len(events), self._max_events):
            chunk = events[start : start + self._max_events]
            try:
                self._send(chunk)
                sent += len(chunk)
            except Exception:
                log.exception("could not send %d task events", len(chunk))
        return sent

    def close(self, timeout: float = 2.0) -> None:
        """Stop the sender after a last send of what is gathered."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        else:
            self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self.flush()
            with self._lock:
                if self._stopped:
                    return
