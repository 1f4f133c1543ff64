"""A Gemini-compatible ``generateContent``, so the unmodified google-genai SDK is a client.

``POST /v1beta/models/<model>:generateContent`` (and ``/v1/...``, the SDK's default), key
in ``x-goog-api-key``: the request becomes a batchgate task (same admission, cache,
idempotency and batching as ``POST /api/v1/task``), answered synchronously in Gemini's
response shape, errors in Gemini's error shape. ``:streamGenerateContent?alt=sse`` streams:
the task gets a model call of its own and its chunks are relayed as they arrive. The last
user turn is the prompt; earlier turns go to the model as turns (the task's ``history``:
the client holds the conversation, as with Gemini itself); generation
settings the task API does not take (e.g. ``responseSchema``) are refused with 400 rather
than silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context
from pydantic import ValidationError

from api.dropin import finished_result, register_error_shape, relay, request_object, streamed_task
from api.edge import add_rate_headers
from api.errors import ApiError
from api.schemas import Generation, TaskRequest, parse_task_request
from api.services import services

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
    """``?alt=sse``: the task is streamed and each chunk the model sends is relayed as an SSE
    event, the last one with the finish reason and usage; without ``alt=sse``, a JSON array
    of one chunk with the whole answer."""
    if request.args.get("alt") != "sse":
        return jsonify([to_response(_answer(model), model)])
    svc = services()
    task = to_task(request_object(), model, svc.settings.max_prompt_chars, svc.settings.max_context_chars)
    task_id, record = streamed_task(svc, task)

    def events() -> Iterator[str]:
        for piece in relay(svc, task_id, record):
            if isinstance(piece, ApiError):
                body = _gemini_error(piece)
            elif isinstance(piece, str):
                body = _chunk(piece, model)
            else:
                body = to_response(piece, model)
            yield f"data: {json.dumps(body, separators=(',', ':'))}\r\n\r\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(events()), mimetype="text/event-stream", headers=headers)


def _answer(model: str) -> dict[str, Any]:
    """Submit the request's GenerateContentRequest as a task; its result."""
    svc = services()
    task = to_task(request_object(), model, svc.settings.max_prompt_chars, svc.settings.max_context_chars)
    return finished_result(svc, task)[1]


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
        fields["history"] = [{"role": _role(role), "text": text} for role, text in turns[:-1]]
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
                "finishReason": result.get("finish_reason") or "STOP",
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


def _chunk(text: str, model: str) -> dict[str, Any]:
    """A streamed GenerateContentResponse carrying one chunk of text."""
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
        "modelVersion": model,
    }


def _role(role: str) -> str:
    if role not in ("user", "model"):
        raise ApiError(400, "invalid_request", f"contents: role must be user or model, not {role!r}")
    return role


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


def _gemini_error(exc: ApiError) -> dict[str, Any]:
    """Gemini's error shape: ``{"error": {"code", "message", "status"}}``."""
    status = GEMINI_STATUS.get(exc.status, "UNKNOWN")
    return {"error": {"code": exc.status, "message": exc.message, "status": status}}


register_error_shape(bp, _gemini_error)
