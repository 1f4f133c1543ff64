"""Submit tasks and read (or wait for) their results."""

from __future__ import annotations

import secrets
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api.errors import ApiError
from api.schemas import parse_task_request
from api.services import Services, services
from batchgate.taskstore import TERMINAL

bp = Blueprint("tasks", __name__, url_prefix="/api/v1")


@bp.post("/tasks")
def submit() -> Response:
    """Enqueue a task: 202 with its id and where to poll."""
    task_id = _enqueue(services())
    response = jsonify({"id": task_id, "status": "queued"})
    response.status_code = 202
    response.headers["Location"] = url_for("tasks.show", task_id=task_id)
    return response


@bp.get("/tasks/<task_id>")
def show(task_id: str) -> Response:
    """A task's status and result; ``?wait=S`` long-polls until it is finished."""
    svc = services()
    record = _wait(svc, task_id, _wait_arg(svc, default=0.0))
    if record is None:
        raise ApiError(404, "not_found", f"no task {task_id!r}")
    return jsonify(task_body(task_id, record))


@bp.post("/task")
def submit_and_wait() -> Response:
    """Enqueue and wait (bounded): 200 with the finished task, else 202 with its Location."""
    svc = services()
    wait_s = _wait_arg(svc, default=svc.settings.default_sync_wait_s)
    task_id = _enqueue(svc)
    record = _wait(svc, task_id, wait_s)
    body = task_body(task_id, record or {"status": "queued"})
    response = jsonify(body)
    if body["status"] not in TERMINAL:
        response.status_code = 202
        response.headers["Location"] = url_for("tasks.show", task_id=task_id)
    return response


def _enqueue(svc: Services) -> str:
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "send the task as JSON (Content-Type: application/json)"
        )
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON")
    task = parse_task_request(body, svc.settings.max_prompt_chars)
    task_id = secrets.token_hex(16)
    message = task.to_message()
    submitted_at = time.time()
    svc.store.create(task_id, message, submitted_at)
    try:
        svc.publisher.publish(task_id, message, submitted_at)
    except Exception as exc:
        svc.store.delete(task_id)
        raise ApiError(503, "queue_unavailable", "the task queue is unavailable; retry later") from exc
    return task_id


def _wait_arg(svc: Services, default: float) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return min(default, svc.settings.max_wait_s)
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_wait", "wait must be a number of seconds") from None
    if not value >= 0:  # also rejects NaN
        raise ApiError(400, "invalid_wait", "wait must be a non-negative number of seconds")
    return min(value, svc.settings.max_wait_s)


def _wait(svc: Services, task_id: str, wait_s: float) -> dict[str, Any] | None:
    record = svc.store.get(task_id)
    if record is None or record.get("status") in TERMINAL or wait_s <= 0:
        return record

    def is_done() -> bool:
        nonlocal record
        record = svc.store.get(task_id)
        return record is None or record.get("status") in TERMINAL

    svc.notifier.wait(task_id, wait_s, is_done)
    return record


def task_body(task_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """The public view of a task record."""
    body: dict[str, Any] = {"id": task_id, "status": record.get("status", "queued")}
    for name in ("result", "error", "timings"):
        if record.get(name):
            body[name] = record[name]
    if record.get("submitted_at"):
        body["submitted_at"] = record["submitted_at"]
    if record.get("finished_at"):
        body["finished_at"] = record["finished_at"]
    return body
