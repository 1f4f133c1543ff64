"""A task's progress as Server-Sent Events: ``queued``, ``running``, ``delta``..., then
``succeeded``/``failed``.

Events are derived from the task record and its streamed chunks in Redis, so any replica
serves any stream and a reconnecting client resumes where it left off: event ids are
1 queued, 2 running, 3... one per ``delta`` (a chunk of a task submitted with
``"stream": true``), and the final event comes last (id 3 when nothing was streamed);
``Last-Event-ID`` (or ``?last_event_id=``) skips those already seen. The stream wakes on the
workers' announcements (tasks starting, chunks, finishes: ``DoneNotifier``), never by
polling, sends a comment every ``KEEPALIVE_S`` while idle, and closes after the final event
(or after ``MAX_STREAM_S``; reconnect to go on). A batched (unstreamed) task has no deltas:
its call returns whole answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from api.edge import authenticate_and_read
from api.errors import ApiError
from api.services import Services, services
from api.tasks_view import task_body
from batchgate.taskstore import TERMINAL

bp = Blueprint("task_events", __name__, url_prefix="/api/v1")

KEEPALIVE_S = 15.0
#: A stream closes after this long even if the task is not finished; the client reconnects.
MAX_STREAM_S = 600.0
QUEUED_ID, RUNNING_ID, FIRST_DELTA_ID = 1, 2, 3


def events_of(
    task_id: str, record: dict[str, Any], deltas: Sequence[dict[str, Any]] = ()
) -> list[tuple[int, str, dict[str, Any]]]:
    """The events a record (and its chunks, all of them) has reached, in order: (id, name, data)."""
    events: list[tuple[int, str, dict[str, Any]]] = []
    if not record.get("cached"):
        events.append((QUEUED_ID, "queued", {"id": task_id, "submitted_at": record.get("submitted_at")}))
    if record.get("picked_at") is not None:
        running = {"id": task_id, "batch_size": record.get("batch_size"), "picked_at": record["picked_at"]}
        events.append((RUNNING_ID, "running", running))
    for index, delta in enumerate(deltas):
        events.append((FIRST_DELTA_ID + index, "delta", {"id": task_id, **delta}))
    status = record.get("status")
    if status in TERMINAL:
        events.append((FIRST_DELTA_ID + len(deltas), str(status), task_body(task_id, record)))
    return events


@bp.get("/tasks/<task_id>/events")
def task_events(task_id: str) -> Response:
    """Stream the task's events (see the module docstring)."""
    svc = services()
    caller, record = authenticate_and_read(svc, task_id)
    if record is None or record.get("owner") != caller.owner:
        raise ApiError(404, "not_found", f"no task {task_id!r}")
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
    try:
        last_seen = int(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_last_event_id", "Last-Event-ID must be an event id (an integer)"
        ) from None
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    stream = _stream(svc, task_id, record, last_seen)
    return Response(stream_with_context(stream), mimetype="text/event-stream", headers=headers)


def _stream(svc: Services, task_id: str, record: dict[str, Any], last_seen: int) -> Iterator[str]:
    deadline = time.monotonic() + MAX_STREAM_S
    current: dict[str, Any] | None
    current, deltas = svc.store.get_with_deltas(task_id) if record.get("picked_at") else (record, [])
    while True:
        if current is None:  # expired while we watched
            expired = {"id": task_id, "status": "failed", "error": {"code": "expired"}}
            yield _event(max(last_seen + 1, FIRST_DELTA_ID), "failed", expired)
            return
        for event_id, name, data in events_of(task_id, current, deltas):
            if event_id > last_seen:
                yield _event(event_id, name, data)
                last_seen = event_id
        if current.get("status") in TERMINAL or time.monotonic() >= deadline:
            return

        def changed(seen: int = last_seen) -> bool:
            """Re-read the record and chunks: is there an event beyond ``seen`` (or expired)?"""
            nonlocal current, deltas
            current, deltas = svc.store.get_with_deltas(task_id)
            if current is None:
                return True
            return max((e[0] for e in events_of(task_id, current, deltas)), default=0) > seen

        if not svc.notifier.wait(
            task_id, min(KEEPALIVE_S, deadline - time.monotonic()), changed, progress=True
        ):
            yield ": keep-alive\n\n"


def _event(event_id: int, name: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
