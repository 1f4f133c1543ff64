"""Streamed chunks are written off the event loop, in order, and a batch can wait for them."""

from __future__ import annotations

import threading
import time

from workers.delta_writer import DeltaWriter


def test_a_slow_store_never_holds_up_the_caller_and_chunks_keep_their_order() -> None:
    written: list[tuple[str, int, str]] = []
    gate = threading.Event()

    def slow_write(task_id: str, attempt: int, text: str) -> None:
        gate.wait(5)  # Redis hiccups
        written.append((task_id, attempt, text))

    writer = DeltaWriter(slow_write)
    started = time.monotonic()
    for n in range(50):
        writer("t", 1, f"chunk {n}")
    assert time.monotonic() - started < 0.5  # the event loop was never held up
    assert not writer.drain(0.05)  # not written yet
    gate.set()
    assert writer.drain(5)
    assert written == [("t", 1, f"chunk {n}") for n in range(50)]


def test_a_failed_write_is_logged_and_the_rest_go_on() -> None:
    written: list[str] = []

    def flaky(task_id: str, attempt: int, text: str) -> None:
        if text == "bad":
            raise ConnectionError("redis went away")
        written.append(text)

    writer = DeltaWriter(flaky)
    for text in ("a", "bad", "b"):
        writer("t", 1, text)
    assert writer.drain(5) and written == ["a", "b"]
