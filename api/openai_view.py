"""An OpenAI-compatible ``POST /v1/chat/completions``, so the unmodified openai SDK is a client.

The key travels as ``Authorization: Bearer <batchgate key>``. Messages become a batchgate
task (same edge policy and batching as ``POST /api/v1/task``): system and developer
messages are the system text, the last user message is the prompt, earlier turns travel as
turns (the task's ``history``, ``assistant`` as Gemini's ``model``: the client holds the
conversation, as with OpenAI).
``stream: true`` is answered as OpenAI's SSE chunks ending in ``data: [DONE]``: the task
gets a model call of its own and each chunk the model sends is relayed as it arrives.
Errors come back in OpenAI's error shape.
Agents' requests are taken as OpenAI sends them: ``tools`` (functions), ``tool_choice``
(``auto``, ``none``, ``required`` or a named function), ``parallel_tool_calls``, assistant
messages with ``tool_calls`` and ``tool`` messages with their results (Gemini's
``functionCall``/``functionResponse`` parts), ``response_format`` (``json_object``, or
``json_schema`` whose answer is validated against the schema), and ``image_url`` content
parts given as ``data:`` URLs (inline data).
Options batchgate cannot honour (``n`` > 1, logprobs, audio, remote image URLs) are refused
with 400 rather than silently ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, stream_with_context
from pydantic import ValidationError

from api.dropin import finished_result, register_error_shape, relay, request_object, streamed_task
from api.edge import add_rate_headers
from api.errors import ApiError
from api.openai_messages import agent_fields, message_text, turns
from api.schemas import Generation, TaskRequest, parse_task_request
from api.services import services

bp = Blueprint("openai", __name__)
bp.after_request(add_rate_headers)

#: Request fields → our Generation fields.
GENERATION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "stop": "stop_sequences",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
#: Accepted and without effect here.
IGNORED_FIELDS = {"user", "stream_options", "metadata", "store"}
#: Fields an agent's request carries: functions, their results, and structured output.
AGENT_FIELDS = {"tools", "tool_choice", "parallel_tool_calls", "response_format"}
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    """Answer a chat completion from a batched task (JSON, or SSE chunks with ``stream``)."""
    svc = services()
    body = request_object()
    task = to_task(body, svc.settings.api.max_prompt_chars, svc.settings.api.max_context_chars)
    model = str(task.model)
    if body.get("stream") is True:
        task_id, record = streamed_task(svc, task)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        events = stream_with_context(_chunks(task_id, model, relay(svc, task_id, record)))
        return Response(events, mimetype="text/event-stream", headers=headers)
    task_id, result = finished_result(svc, task)
    return jsonify(to_completion(task_id, model, result))


def to_task(body: dict[str, Any], max_prompt_chars: int, max_context_chars: int) -> TaskRequest:
    """The task for a chat completion request (400 for what cannot be expressed)."""
    allowed = {"model", "messages", "stream", "n", *GENERATION_FIELDS, *IGNORED_FIELDS, *AGENT_FIELDS}
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(
            400, "unsupported_parameter", f"not supported by batchgate: {', '.join(sorted(unknown))}"
        )
    if body.get("n", 1) != 1:
        raise ApiError(400, "unsupported_parameter", "n: batchgate answers one choice")
    if not isinstance(body.get("model"), str):
        raise ApiError(400, "invalid_request", "model: required, a string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "invalid_request", "messages: a non-empty list is required")
    system = [
        message_text(m.get("content"), "system")
        for m in messages
        if isinstance(m, dict) and m.get("role") in ("system", "developer")
    ]
    dialogue = turns(
        [m for m in messages if not (isinstance(m, dict) and m.get("role") in ("system", "developer"))]
    )
    if not dialogue or dialogue[-1]["role"] != "user":
        raise ApiError(400, "invalid_request", "messages: the last message must come from the user or a tool")
    last = dialogue[-1]
    fields: dict[str, Any] = {"prompt": last.get("text", ""), "model": body["model"]}
    for name in ("attachments", "tool_results"):
        if last.get(name):
            fields[name] = last[name]
    if system:
        fields["system"] = "\n\n".join(system)
    if len(dialogue) > 1:
        fields["history"] = dialogue[:-1]
    fields.update(agent_fields(body))
    settings = {GENERATION_FIELDS[k]: v for k, v in body.items() if k in GENERATION_FIELDS and v is not None}
    if isinstance(settings.get("stop_sequences"), str):
        settings["stop_sequences"] = [settings["stop_sequences"]]
    if settings:
        try:
            fields["generation"] = Generation.model_validate(settings).model_dump(exclude_none=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ApiError(400, "invalid_request", f"{first['loc'][0]}: {first['msg']}") from None
    try:
        return parse_task_request(fields, max_prompt_chars, max_context_chars)
    except ApiError as exc:
        raise ApiError(400, exc.code, exc.message) from None


def to_completion(task_id: str, model: str, result: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object for a task's result."""
    return {
        "id": f"chatcmpl-{task_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": _assistant_message(result),
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": _usage(result),
    }


def _assistant_message(result: dict[str, Any]) -> dict[str, Any]:
    calls = _openai_calls(result)
    if not calls:
        return {"role": "assistant", "content": result.get("text", "")}
    return {"role": "assistant", "content": result.get("text") or None, "tool_calls": calls}


def _openai_calls(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A result's function calls as OpenAI's ``tool_calls`` (arguments as JSON text)."""
    calls = []
    for call in result.get("tool_calls") or []:
        arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
        entry: dict[str, Any] = {
            "id": call.get("id"),
            "type": "function",
            "function": {"name": call.get("name"), "arguments": arguments},
        }
        if call.get("thought_signature"):  # where Gemini's own OpenAI-compatible endpoint puts it
            entry["extra_content"] = {"google": {"thought_signature": call["thought_signature"]}}
        calls.append(entry)
    return calls


def _chunks(task_id: str, model: str, pieces: Iterator[str | dict[str, Any] | ApiError]) -> Iterator[str]:
    """``chat.completion.chunk`` events: the role, each chunk of the answer as the model sends
    it, the finish with usage, ``[DONE]``; an error mid-stream as OpenAI's error object."""
    base = {
        "id": f"chatcmpl-{task_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    yield event({"role": "assistant", "content": ""})
    for piece in pieces:
        if isinstance(piece, ApiError):
            yield f"data: {json.dumps(_openai_error(piece), separators=(',', ':'))}\n\n"
            return
        if isinstance(piece, str):
            yield event({"content": piece})
            continue
        if piece.get("text"):
            yield event({"content": piece["text"]})
        calls = _openai_calls(piece)
        if calls:
            yield event({"tool_calls": [{"index": n, **call} for n, call in enumerate(calls)]})
        yield event({}, finish_reason(piece), usage=_usage(piece))
    yield "data: [DONE]\n\n"


#: Gemini's finish reasons as OpenAI names them (anything else: "stop").
_FINISH_REASONS = {
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


def finish_reason(result: dict[str, Any]) -> str:
    """OpenAI's ``finish_reason`` for a task's result (``length`` for an answer cut at its limit,
    ``tool_calls`` for one that calls functions)."""
    if result.get("tool_calls"):
        return "tool_calls"
    return _FINISH_REASONS.get(str(result.get("finish_reason") or "STOP"), "stop")


def _usage(result: dict[str, Any]) -> dict[str, int]:
    usage = result.get("usage") or {}
    prompt, completion = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_error(exc: ApiError) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = ERROR_TYPES.get(exc.status, "server_error" if exc.status >= 500 else "invalid_request_error")
    return {"error": {"message": exc.message, "type": kind, "param": None, "code": exc.code}}


register_error_shape(bp, _openai_error)
