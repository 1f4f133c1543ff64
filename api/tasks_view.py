"""Submit tasks and read (or wait for) their results."""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api.edge import (
    Caller,
    add_rate_headers,
    api_key_sent,
    authenticate,
    authenticate_and_admit,
    authenticate_and_read,
)
from api.errors import ApiError
from api.request_body import json_body
from api.request_id import request_id
from api.schemas import TaskRequest, parse_task_request
from api.services import Services, services
from api.submit import SubmitContext, submit_task
from batchgate.apikeys import hash_key
from batchgate.taskstore import TERMINAL

bp = Blueprint("tasks", __name__, url_prefix="/api/v1")

bp.after_request(add_rate_headers)


@bp.post("/tasks")
def submit() -> Response:
    """Enqueue a task: 202 with its id and where to poll (200 when answered from the cache)."""
    svc = services()
    task_id, record = _submit(svc)
    return _respond(task_id, record, accepted_status=202)


@bp.get("/tasks/<task_id>")
def show(task_id: str) -> Response:
    """A task's status and result; ``?wait=S`` long-polls until it is finished.

    The first read fetches the caller's key and the record together (one round trip); a
    long-poll re-reads only the record when woken.
    """
    svc = services()
    _refuse_without_key(svc)
    wait_s = _wait_arg(svc, default=0.0)
    caller: Caller | None = None
    record: dict[str, Any] | None = None

    def is_done() -> bool:
        nonlocal caller, record
        if caller is None:
            caller, record = authenticate_and_read(svc, task_id)
        else:
            record = svc.store.get(task_id)
        # Someone else's task, or none: nothing to wait for (answered 404 below).
        return record is None or record.get("owner") != caller.owner or record.get("status") in TERMINAL

    svc.notifier.wait(task_id, wait_s, is_done)
    if caller is None or record is None or record.get("owner") != caller.owner:
        raise ApiError(404, "not_found", f"no task {task_id!r}")
    return jsonify(task_body(task_id, record))


@bp.post("/task")
def submit_and_wait() -> Response:
    """Enqueue and wait (bounded): 200 with the finished task, else 202 with its Location."""
    svc = services()
    _refuse_without_key(svc)
    task_id, record = submit_and_wait_for(
        svc, None, _wait_arg(svc, default=svc.settings.api.default_sync_wait_s)
    )
    return _respond(task_id, record, accepted_status=202)


def submit_and_wait_for(
    svc: Services, task: TaskRequest | None, wait_s: float, collapse: str = ""
) -> tuple[str, dict[str, Any]]:
    """Submit ``task`` (None: the request's JSON body) with the full edge policy and wait up
    to ``wait_s`` for it; the record as it then stands. Also the drop-in endpoints' core:
    ``collapse`` names them, so that an identical request of the same key sent while the first
    is in flight (an SDK retrying a timeout) joins it instead of making another task."""
    task_id, record = _submit(svc, task, collapse)
    if record.get("status") not in TERMINAL:
        record = _wait(svc, task_id, wait_s) or record
    return task_id, record


def _respond(task_id: str, record: dict[str, Any], accepted_status: int) -> Response:
    body = task_body(task_id, record)
    response = jsonify(body)
    response.headers["Location"] = url_for("tasks.show", task_id=task_id)
    response.status_code = 200 if body["status"] in TERMINAL else accepted_status
    if "queue_depth" in record:
        response.headers["X-Queue-Depth"] = str(record["queue_depth"])
    return response


def _submit(svc: Services, task: TaskRequest | None = None, collapse: str = "") -> tuple[str, dict[str, Any]]:
    """The request's submission (``task``, or its JSON body), through ``submit_task``."""
    key = api_key_sent() if svc.settings.edge.auth_enabled else ""
    ctx = SubmitContext(
        idempotency_key=request.headers.get("Idempotency-Key", ""),
        request_id=request_id(),
        collapse=collapse,
        key_owner=hash_key(key) if key else "",
    )
    _refuse_without_key(svc)
    sent = task or _parse_body(svc)
    return submit_task(svc, sent, ctx, functools.partial(authenticate_and_admit, svc))


def _refuse_without_key(svc: Services) -> None:
    """401 at once when no key is sent: before any complaint about the body or the query."""
    if svc.settings.edge.auth_enabled and not api_key_sent():
        authenticate(svc)


def _parse_body(svc: Services) -> TaskRequest:
    body = json_body("the task")
    return parse_task_request(body, svc.settings.api.max_prompt_chars, svc.settings.api.max_context_chars)


def _wait_arg(svc: Services, default: float) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return min(default, svc.settings.api.max_wait_s)
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_wait", "wait must be a number of seconds") from None
    if not value >= 0:  # also rejects NaN
        raise ApiError(400, "invalid_wait", "wait must be a non-negative number of seconds")
    return min(value, svc.settings.api.max_wait_s)


def _wait(svc: Services, task_id: str, wait_s: float) -> dict[str, Any] | None:
    """The task's record, once finished or after ``wait_s``; the notifier reads it once before
    waiting (after registering, so no finish is missed) and again on each wake-up."""
    record: dict[str, Any] | None = None

    def is_done() -> bool:
        nonlocal record
        record = svc.store.get(task_id)
        return record is None or record.get("status") in TERMINAL

    svc.notifier.wait(task_id, wait_s, is_done)
    return record


def task_body(task_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """The public view of a task record."""
    body: dict[str, Any] = {"id": task_id, "status": record.get("status", "queued")}
    for name in ("result", "error", "timings", "parked", "bulk"):
        if record.get(name):
            body[name] = record[name]
    if record.get("cached"):
        body["cached"] = True
    for name in ("submitted_at", "finished_at", "request_id"):
        if record.get(name):
            body[name] = record[name]
    return body
