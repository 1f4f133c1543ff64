"""What the drop-in endpoints (Gemini, OpenAI) share: a JSON object body in, a finished
task's result out, and errors in the foreign API's own shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from flask import Blueprint, Response, request

from api.errors import ApiError, json_response, redis_unavailable
from api.schemas import TaskRequest
from api.services import Services
from api.tasks_view import submit_and_wait_for
from batchgate.taskstore import SUCCEEDED, TERMINAL


def request_object() -> dict[str, Any]:
    """The request's JSON body; 400 unless it is an object."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return body


def finished_result(svc: Services, task: TaskRequest) -> tuple[str, dict[str, Any]]:
    """Submit ``task`` with the full edge policy, wait for it, return (task id, result):
    504 if the wait runs out (the task goes on; its id says where to poll), 500 if it failed."""
    task_id, record = submit_and_wait_for(svc, task, svc.settings.default_sync_wait_s)
    status = record.get("status")
    if status not in TERMINAL:
        raise ApiError(504, "timeout", f"the task {task_id} is still {status}; poll /api/v1/tasks/{task_id}")
    if status != SUCCEEDED:
        error = record.get("error") or {}
        raise ApiError(500, str(error.get("code", "failed")), str(error.get("message", "the task failed")))
    return task_id, record["result"]


def register_error_shape(bp: Blueprint, shape: Callable[[ApiError], dict[str, Any]]) -> None:
    """Answer the blueprint's errors (ours, and Redis being down) as ``shape`` renders them."""

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return json_response(shape(exc), exc.status, exc.headers)

    @bp.errorhandler(redis.RedisError)
    def _redis_error(exc: redis.RedisError) -> Response:
        return _api_error(redis_unavailable(exc))
