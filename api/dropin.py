"""What the drop-in endpoints (Gemini, OpenAI) share: a JSON object body in, a finished
task's result out, and errors in the foreign API's own shape."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from flask import Blueprint, Response, request

from api.edge import api_key_sent, authenticate
from api.errors import ApiError, json_response, redis_unavailable
from api.schemas import TaskRequest
from api.services import Services, services
from api.tasks_view import submit_and_wait_for
from batchgate.taskstore import SUCCEEDED, TERMINAL


def request_object() -> dict[str, Any]:
    """The request's JSON body; 400 unless it is an object. Without any key the answer is 401,
    before any complaint about the body (as for ``POST /api/v1/tasks``)."""
    svc = services()
    if svc.settings.edge.auth_enabled and not api_key_sent():
        authenticate(svc)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return body


def finished_result(svc: Services, task: TaskRequest) -> tuple[str, dict[str, Any]]:
    """Submit ``task`` with the full edge policy, wait for it, return (task id, result):
    504 if the wait runs out (the task goes on; its id says where to poll), 500 if it failed."""
    task_id, record = submit_and_wait_for(svc, task, svc.settings.api.default_sync_wait_s, _collapse())
    status = record.get("status")
    if status not in TERMINAL:
        raise ApiError(504, "timeout", f"the task {task_id} is still {status}; poll /api/v1/tasks/{task_id}")
    if status != SUCCEEDED:
        raise task_failure(record)
    return task_id, record["result"]


#: Failed tasks answered with a status of their own instead of 500: the model could not give
#: an answer of the asked shape (not retried by the SDKs, unlike a 5xx).
FAILURE_STATUS = {
    "invalid_structured_output": 422,
    "structured_output_truncated": 422,
    "missing_function_call": 422,
}


def task_failure(record: dict[str, Any]) -> ApiError:
    """The error a failed task is answered with."""
    error = record.get("error") or {}
    code = str(error.get("code", "failed"))
    return ApiError(FAILURE_STATUS.get(code, 500), code, str(error.get("message", "the task failed")))


def streamed_task(svc: Services, task: TaskRequest) -> tuple[str, dict[str, Any]]:
    """Submit ``task`` to be streamed (``stream: true``) with the full edge policy; its id and
    record at once, so refusals are still plain HTTP errors before any event is sent."""
    return submit_and_wait_for(svc, task.model_copy(update={"stream": True}), 0.0, _collapse())


def _collapse() -> str:
    """What identical drop-in requests in flight are collapsed by: the endpoint (and model)."""
    return f"dropin:{request.path}"


def relay(svc: Services, task_id: str, record: dict[str, Any]) -> Iterator[str | dict[str, Any] | ApiError]:
    """A streamed task as it happens: each chunk of text, then the result (a dict), or an
    ApiError in its place. Chunks are those of one attempt: if the model call is retried
    after chunks were relayed, the stream ends with an error rather than repeat itself."""
    deadline = time.monotonic() + svc.settings.api.default_sync_wait_s
    current: dict[str, Any] | None = record
    deltas: list[dict[str, Any]] = []
    relayed, attempt, sent_text = 0, None, False
    while True:
        if current is None:
            yield ApiError(500, "expired", f"the task {task_id} expired")
            return
        fresh = deltas[relayed:]
        if attempt is None and fresh:  # start with the newest attempt's chunks
            attempt = fresh[-1].get("attempt")
            fresh = [d for d in fresh if d.get("attempt") == attempt]
        for delta in fresh:
            if delta.get("attempt") != attempt:
                where = f"poll /api/v1/tasks/{task_id}"
                yield ApiError(
                    502, "stream_interrupted", f"the model stream broke off and is retried; {where}"
                )
                return
            yield str(delta.get("text", ""))
            sent_text = True
        relayed = len(deltas)
        status = current.get("status")
        if status == SUCCEEDED:
            result = dict(current.get("result") or {})
            if sent_text:
                result["text"] = ""  # already sent, chunk by chunk
            yield result
            return
        if status in TERMINAL:
            yield task_failure(current)
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            yield ApiError(
                504, "timeout", f"the task {task_id} is still {status}; poll /api/v1/tasks/{task_id}"
            )
            return

        def changed(seen: int = len(deltas)) -> bool:
            nonlocal current, deltas
            current, deltas = svc.store.get_with_deltas(task_id)
            return current is None or current.get("status") in TERMINAL or len(deltas) > seen

        svc.notifier.wait(task_id, remaining, changed, progress=True)


def register_error_shape(bp: Blueprint, shape: Callable[[ApiError], dict[str, Any]]) -> None:
    """Answer the blueprint's errors (ours, and Redis being down) as ``shape`` renders them."""

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return json_response(shape(exc), exc.status, exc.headers)

    @bp.errorhandler(redis.RedisError)
    def _redis_error(exc: redis.RedisError) -> Response:
        return _api_error(redis_unavailable(exc))
