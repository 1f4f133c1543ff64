"""A Gemini-compatible ``generateContent``, so the unmodified google-genai SDK is a client.

``POST /v1beta/models/<model>:generateContent`` (and ``/v1/...``, the SDK's default, and
``:streamGenerateContent?alt=sse``), key
in ``x-goog-api-key``: the request becomes a batchgate task (same admission, cache,
idempotency and batching as ``POST /api/v1/task``), answered synchronously in Gemini's
response shape, errors in Gemini's error shape. The last user turn is the prompt; earlier
turns travel as context (``{"conversation": [...]}``) until sessions land; generation
settings the task API does not take (e.g. ``responseSchema``) are refused with 400 rather
than silently dropped.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from api.edge import add_rate_headers
from api.errors import ApiError
from api.schemas import Generation, TaskRequest, parse_task_request
from api.services import services
from api.tasks_view import submit_and_wait_for
from batchgate.taskstore import SUCCEEDED, TERMINAL

bp = Blueprint("gemini", __name__)
bp.after_request(add_rate_headers)

#: generationConfig fields (camelCase, as the REST API names them) → our Generation fields.
GENERATION_FIELDS = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "maxOutputTokens": "max_output_tokens",
    "stopSequences": "stop_sequences",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
#: Our status codes → Gemini's ``error.status``.
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@bp.post("/v1beta/models/<model>:generateContent")
@bp.post("/v1/models/<model>:generateContent")
def generate_content(model: str) -> Response:
    """Answer one generateContent call from a batched task."""
    return jsonify(to_response(_answer(model), model))


@bp.post("/v1beta/models/<model>:streamGenerateContent")
@bp.post("/v1/models/<model>:streamGenerateContent")
def stream_generate_content(model: str) -> Response:
    """``?alt=sse``: the answer as Server-Sent Events, one chunk (batched calls return whole
    answers); without ``alt=sse``, a JSON array of that one chunk, as Gemini does."""
    chunk = to_response(_answer(model), model)
    if request.args.get("alt") == "sse":
        payload = f"data: {json.dumps(chunk, separators=(',', ':'))}\r\n\r\n"
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(payload, mimetype="text/event-stream", headers=headers)
    return jsonify([chunk])


def _answer(model: str) -> dict[str, Any]:
    """Submit the request's GenerateContentRequest as a task and wait for its result."""
    svc = services()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    task = to_task(body, model, svc.settings.max_prompt_chars, svc.settings.max_context_chars)
    task_id, record = submit_and_wait_for(svc, task, svc.settings.default_sync_wait_s)
    status = record.get("status")
    if status not in TERMINAL:
        raise ApiError(
            504, "timeout", f"the task {task_id} is still {status}; poll /api/v1/tasks/{task_id} for it"
        )
    if status != SUCCEEDED:
        error = record.get("error") or {}
        raise ApiError(500, str(error.get("code", "failed")), str(error.get("message", "the task failed")))
    return record["result"]  # type: ignore[no-any-return]


def to_task(body: dict[str, Any], model: str, max_prompt_chars: int, max_context_chars: int) -> TaskRequest:
    """The task for a GenerateContentRequest (400 for what cannot be expressed)."""
    unknown = set(body) - {"contents", "systemInstruction", "generationConfig", "safetySettings"}
    if unknown:
        raise ApiError(400, "unsupported_field", f"not supported by batchgate: {', '.join(sorted(unknown))}")
    turns = [_turn(content) for content in _list(body.get("contents"), "contents")]
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "invalid_request", "contents must end with a user turn")
    fields: dict[str, Any] = {"prompt": turns[-1][1], "model": model}
    if len(turns) > 1:
        fields["context"] = {"conversation": [{"role": role, "text": text} for role, text in turns[:-1]]}
    system = body.get("systemInstruction")
    if system is not None:
        fields["system"] = _turn(system, default_role="system")[1]
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise ApiError(400, "invalid_request", "generationConfig must be an object")
    unsupported = set(config) - set(GENERATION_FIELDS)
    if unsupported:
        raise ApiError(
            400,
            "unsupported_field",
            f"generationConfig: not supported by batchgate: {', '.join(sorted(unsupported))}",
        )
    if config:
        try:
            fields["generation"] = Generation.model_validate(
                {GENERATION_FIELDS[name]: value for name, value in config.items()}
            ).model_dump(exclude_none=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ApiError(400, "invalid_request", f"generationConfig.{where}: {first['msg']}") from None
    try:
        return parse_task_request(fields, max_prompt_chars, max_context_chars)
    except ApiError as exc:
        raise ApiError(400, exc.code, exc.message) from None


def to_response(result: dict[str, Any], model: str) -> dict[str, Any]:
    """A GenerateContentResponse for a task's result."""
    usage = result.get("usage") or {}
    prompt_tokens, output_tokens = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": result.get("text", "")}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
        "modelVersion": result.get("model") or model,
    }


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ApiError(400, "invalid_request", f"{name} must be a list")
    return value


def _turn(content: Any, default_role: str = "user") -> tuple[str, str]:
    """(role, text) of a Content; only text parts are supported."""
    if not isinstance(content, dict):
        raise ApiError(400, "invalid_request", "each content must be an object")
    texts = []
    for part in _list(content.get("parts"), "parts"):
        if not isinstance(part, dict) or set(part) - {"text"} or not isinstance(part.get("text"), str):
            raise ApiError(400, "unsupported_part", "only text parts are supported by batchgate")
        texts.append(part["text"])
    return str(content.get("role") or default_role), "".join(texts)


@bp.errorhandler(ApiError)
def _gemini_error(exc: ApiError) -> Response:
    """Errors in Gemini's shape: ``{"error": {"code", "message", "status"}}``."""
    response = jsonify(
        {
            "error": {
                "code": exc.status,
                "message": exc.message,
                "status": GEMINI_STATUS.get(exc.status, "UNKNOWN"),
            }
        }
    )
    response.status_code = exc.status
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


@bp.errorhandler(redis.RedisError)
def _unavailable(exc: redis.RedisError) -> Response:
    return _gemini_error(ApiError(503, "redis_unavailable", "the task store is unavailable; retry later"))
