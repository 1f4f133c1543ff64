"""Wakes long-polls when their task finishes, with one Redis subscription per process.

Workers publish finished task ids on the store's done channel. A single listener thread
(a greenlet under gunicorn's gevent workers) wakes the waiters registered for those ids,
so a thousand waiting clients cost one connection and no polling. Waiters re-read the
record after waking or timing out, so a missed message costs latency, never an answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)


#: A waiter re-reads the record at least this often, in case a message was missed.
RECHECK_S = 5.0


class DoneNotifier:
    """Registry of waiters keyed by task id, fed by a pub/sub listener started on first use."""

    def __init__(self, client: redis.Redis, channel: str, progress_channel: str | None = None) -> None:
        self._redis = client
        self._channel = channel
        #: Where workers announce tasks that started running (for task event streams).
        self._progress_channel = progress_channel
        self._waiters: dict[str, set[threading.Event]] = {}
        #: Waiters that also want to wake when their task starts running.
        self._progress_waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._subscribed = threading.Event()

    def wait(
        self, task_id: str, timeout_s: float, is_done: Callable[[], bool], progress: bool = False
    ) -> bool:
        """Wait up to ``timeout_s`` for ``task_id`` to finish; ``is_done`` re-checks the store.

        ``progress``: wake (and re-check) when the task starts running too.
        """
        if timeout_s <= 0:
            return is_done()
        self._ensure_listener()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(task_id, set()).add(event)
            if progress:
                self._progress_waiters.setdefault(task_id, set()).add(event)
        try:
            if is_done():  # finished before we registered: no message will come
                return True
            deadline = time.monotonic() + timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return is_done()
                event.wait(min(remaining, RECHECK_S))
                if is_done():
                    return True
                event.clear()
        finally:
            with self._lock:
                for registry in (self._waiters, self._progress_waiters):
                    waiting = registry.get(task_id)
                    if waiting is not None:
                        waiting.discard(event)
                        if not waiting:
                            del registry[task_id]

    def _ensure_listener(self) -> None:
        with self._lock:
            if self._listener is None or not self._listener.is_alive():
                self._listener = threading.Thread(target=self._listen, name="done-notifier", daemon=True)
                self._listener.start()
        self._subscribed.wait(2.0)

    def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(*[c for c in (self._channel, self._progress_channel) if c])
                self._subscribed.set()
                self._wake_all()  # anything finished while we were not subscribed
                backoff = 0.1
                for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        data = data.decode()
                    if isinstance(data, str):
                        channel = message.get("channel")
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        progress = channel == self._progress_channel
                        self._wake(data.split(), self._progress_waiters if progress else self._waiters)
            except redis.RedisError as exc:
                log.warning("done-notifier lost its subscription (%s); resubscribing", exc)
                self._subscribed.clear()
                self._wake_all()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                pubsub.close()

    def _wake(self, task_ids: list[str], registry: dict[str, set[threading.Event]]) -> None:
        with self._lock:
            events = [e for t in task_ids for e in registry.get(t, ())]
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = [e for waiting in self._waiters.values() for e in waiting]
        for event in events:
            event.set()
