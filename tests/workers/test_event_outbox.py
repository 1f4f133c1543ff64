"""The task-event outbox: events from many threads leave together, in order, and none is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from workers.event_outbox import EventOutbox
from workers.task_events import TaskEvent


def _events(tag: str, n: int) -> list[TaskEvent]:
    return [TaskEvent("task-started", {"uuid": f"{tag}-{i}"}) for i in range(n)]


def test_events_of_many_batches_leave_in_few_messages_in_their_order() -> None:
    sent: list[list[TaskEvent]] = []
    outbox = EventOutbox(lambda events: sent.append(list(events)), interval_s=3600, max_events=4)
    for batch in range(3):
        outbox.put(_events(f"b{batch}", 3))
    assert sent == []  # nothing leaves before the interval
    assert outbox.flush() == 9
    assert [len(m) for m in sent] == [4, 4, 1]  # at most max_events per message
    assert [e.fields["uuid"] for m in sent for e in m] == [f"b{b}-{i}" for b in range(3) for i in range(3)]
    outbox.close()


def test_the_sender_thread_sends_what_threads_put_and_close_sends_the_rest() -> None:
    sent: list[TaskEvent] = []
    lock = threading.Lock()

    def send(events: Sequence[TaskEvent]) -> None:
        with lock:
            sent.extend(events)

    outbox = EventOutbox(send, interval_s=0.01)
    threads = [threading.Thread(target=lambda t=t: outbox.put(_events(f"t{t}", 50))) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 5
    while len(sent) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sent) == 400
    outbox.put(_events("last", 2))
    outbox.close()
    assert [e.fields["uuid"] for e in sent[-2:]] == ["last-0", "last-1"]
    assert len({e.fields["uuid"] for e in sent}) == 402


def test_a_failing_send_is_logged_and_later_events_still_leave() -> None:
    calls: list[int] = []

    def send(events: Sequence[TaskEvent]) -> None:
        calls.append(len(events))
        if len(calls) == 1:
            raise ConnectionError("redis down")

    outbox = EventOutbox(send, interval_s=3600)
    outbox.put(_events("a", 2))
    assert outbox.flush() == 0
    outbox.put(_events("b", 3))
    assert outbox.flush() == 3
    assert calls == [2, 3]


def test_too_many_held_events_drop_the_oldest_and_count_them() -> None:
    sent: list[TaskEvent] = []
    outbox = EventOutbox(sent.extend, interval_s=3600, max_held=5)
    outbox.put(_events("x", 8))
    assert outbox.dropped == 3
    outbox.flush()
    assert [e.fields["uuid"] for e in sent] == [f"x-{i}" for i in range(3, 8)]
