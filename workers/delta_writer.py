"""Streamed chunks go to Redis from a thread of their own, never from the engine's event loop.

The engine reports each chunk of a streamed answer as it arrives, on the event loop that
runs every model call of the worker process. Writing it to Redis there would make a Redis
hiccup (the client retries for seconds) stall every call of the worker; here the loop only
queues the chunk, and one writer thread writes the chunks in the order they came. A batch
waits for its chunks to be written (``drain``) before it stores its answers, so a task's
stream always holds its chunks before its final event.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Write = Callable[[str, int, str], None]


class DeltaWriter:
    """A sink for ``(task id, attempt, text)`` chunks, written by a background thread."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[str, int, str]] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def __call__(self, task_id: str, attempt: int, text: str) -> None:
        """Queue a chunk (called on the event loop: returns at once)."""
        self._ensure_thread()
        with self._idle:
            self._pending += 1
        self._queue.put((task_id, attempt, text))

    def drain(self, timeout_s: float) -> bool:
        """Wait until every chunk queued so far is written (False if ``timeout_s`` ran out)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="delta-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            task_id, attempt, text = self._queue.get()
            try:
                self._write(task_id, attempt, text)
            except Exception:  # a chunk is telemetry for the stream: the answer itself is kept
                log.exception("could not record a chunk of task %s", task_id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
