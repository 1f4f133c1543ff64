"""A Gemini-compatible ``generateContent``, so the unmodified google-genai SDK is a client.

``POST /v1beta/models/<model>:generateContent`` (and ``/v1/...``, the SDK's default), key
in ``x-goog-api-key``: the request becomes a batchgate task (same admission, cache,
idempotency and batching as ``POST /api/v1/task``), answered synchronously in Gemini's
response shape, errors in Gemini's error shape. ``:streamGenerateContent?alt=sse`` streams:
the task gets a model call of its own and its chunks are relayed as they arrive. The last
user turn is the prompt; earlier turns go to the model as turns (the task's ``history``:
the client holds the conversation, as with Gemini itself). Agents' requests are taken as
Gemini's own: ``tools`` with ``functionDeclarations`` (``parameters`` or
``parametersJsonSchema``), ``toolConfig.functionCallingConfig``, ``functionCall`` parts in
model turns and ``functionResponse`` parts in user turns, ``inlineData`` parts (images, PDF),
and ``responseMimeType`` with ``responseSchema`` or ``responseJsonSchema`` (the answer is
validated against it). What the task API cannot express (other tools such as Google Search,
``fileData``, ``text/x.enum``, unknown generation settings) is refused with 400 rather than
silently dropped.
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
from batching.structured import SchemaError, from_gemini_schema

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
#: GenerateContentRequest fields batchgate takes (``safetySettings`` has no effect).
REQUEST_FIELDS = frozenset(
    {"contents", "systemInstruction", "generationConfig", "safetySettings", "tools", "toolConfig"}
)
#: generationConfig fields about the answer's form (``_output``).
OUTPUT_FIELDS = {"responseMimeType", "responseSchema", "responseJsonSchema"}
_SNAKE_CONFIG = {
    "response_mime_type", "response_schema", "response_json_schema", "max_output_tokens", "top_p", "top_k",
    "stop_sequences", "presence_penalty", "frequency_penalty",
}  # fmt: skip
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
    task = to_task(
        request_object(), model, svc.settings.api.max_prompt_chars, svc.settings.api.max_context_chars
    )
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
    task = to_task(
        request_object(), model, svc.settings.api.max_prompt_chars, svc.settings.api.max_context_chars
    )
    return finished_result(svc, task)[1]


def to_task(body: dict[str, Any], model: str, max_prompt_chars: int, max_context_chars: int) -> TaskRequest:
    """The task for a GenerateContentRequest (400 for what cannot be expressed)."""
    body = _camel_keys(body, ("system_instruction", "generation_config", "safety_settings", "tool_config"))
    unknown = set(body) - REQUEST_FIELDS
    if unknown:
        raise ApiError(400, "unsupported_field", f"not supported by batchgate: {', '.join(sorted(unknown))}")
    turns = [_turn(content) for content in _list(body.get("contents"), "contents")]
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(400, "invalid_request", "contents must end with a user turn")
    last = turns[-1]
    if last.get("tool_calls"):
        raise ApiError(400, "invalid_request", "functionCall parts belong to model turns")
    fields: dict[str, Any] = {"prompt": last.get("text", ""), "model": model}
    for name in ("attachments", "tool_results"):
        if last.get(name):
            fields[name] = last[name]
    if len(turns) > 1:
        fields["history"] = turns[:-1]
    system = body.get("systemInstruction")
    if system is not None:
        instruction = _turn(system, default_role="system")
        if set(instruction) - {"role", "text"}:
            raise ApiError(
                400, "unsupported_part", "systemInstruction: only text parts are supported by batchgate"
            )
        fields["system"] = instruction["text"]
    fields.update(_tools(body.get("tools"), body.get("toolConfig")))
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise ApiError(400, "invalid_request", "generationConfig must be an object")
    config = _camel_keys(config, tuple(_SNAKE_CONFIG))
    fields.update(_output(config))
    config = {k: v for k, v in config.items() if k not in OUTPUT_FIELDS}
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
    """A GenerateContentResponse for a task's result (its function calls as ``functionCall`` parts)."""
    usage = result.get("usage") or {}
    prompt_tokens, output_tokens = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    calls = [_function_call_part(call) for call in result.get("tool_calls") or []]
    parts = ([{"text": result["text"]}] if result.get("text") or not calls else []) + calls
    if not parts:
        parts = [{"text": ""}]
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
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


def _function_call_part(call: dict[str, Any]) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {k: call[k] for k in ("id", "name", "args") if k in call}}
    if call.get("thought_signature"):
        part["thoughtSignature"] = call["thought_signature"]
    return part


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


def _turn(content: Any, default_role: str = "user") -> dict[str, Any]:
    """A Content as a task turn: text, ``inlineData`` (attachments), ``functionCall`` (a model
    turn's ``tool_calls``) and ``functionResponse`` parts (a user turn's ``tool_results``).
    A thought part is the model's own and is left out; so is a ``thoughtSignature`` except on
    a ``functionCall`` part (Gemini 3 wants a call's signature back with it)."""
    if not isinstance(content, dict):
        raise ApiError(400, "invalid_request", "each content must be an object")
    role = str(content.get("role") or default_role)
    if default_role != "system":
        role = _role(role)
    texts: list[str] = []
    turn: dict[str, Any] = {"role": role}
    for part in _list(content.get("parts"), "parts"):
        if not isinstance(part, dict):
            raise ApiError(400, "invalid_request", "each part must be an object")
        part = _camel_keys(part, ("inline_data", "function_call", "function_response", "thought_signature"))
        data = {k: v for k, v in part.items() if k not in ("thought", "thoughtSignature")}
        if part.get("thought") is True:
            continue
        if set(data) == {"text"} and isinstance(data["text"], str):
            texts.append(data["text"])
        elif set(data) == {"inlineData"}:
            turn.setdefault("attachments", []).append(_inline(data["inlineData"]))
        elif set(data) == {"functionCall"}:
            call = _call_or_response(data["functionCall"], "args")
            if part.get("thoughtSignature"):  # the model's, given back: Gemini 3 wants it
                call["thought_signature"] = part["thoughtSignature"]
            turn.setdefault("tool_calls", []).append(call)
        elif set(data) == {"functionResponse"}:
            turn.setdefault("tool_results", []).append(
                _call_or_response(data["functionResponse"], "response")
            )
        else:
            raise ApiError(
                400,
                "unsupported_part",
                "batchgate takes text, inlineData, functionCall and functionResponse parts",
            )
    turn["text"] = "".join(texts)
    return turn


def _inline(blob: Any) -> dict[str, Any]:
    blob = _camel_keys(blob, ("mime_type",)) if isinstance(blob, dict) else None
    if not isinstance(blob, dict) or set(blob) - {"mimeType", "data", "displayName"}:
        raise ApiError(400, "invalid_request", "inlineData: mimeType and base64 data")
    return {"mime_type": blob.get("mimeType"), "data": blob.get("data")}


def _call_or_response(entry: Any, payload: str) -> dict[str, Any]:
    """A ``functionCall`` (``args``) or ``functionResponse`` (``response``) as the task API
    spells it: ``{"name", "args"|"response", "id"?}``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ApiError(400, "invalid_request", f"a function {payload} part needs a name")
    unknown = set(entry) - {"name", payload, "id"}
    if unknown:
        raise ApiError(400, "unsupported_part", f"not supported by batchgate: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {"name": entry["name"], payload: entry.get(payload) or {}}
    if entry.get("id"):
        out["id"] = entry["id"]
    return out


def _tools(tools: Any, config: Any) -> dict[str, Any]:
    """``tools`` (function declarations only) and ``toolConfig`` as task fields. Mode ANY with
    allowed names keeps only those functions, and requires a call of one of them."""
    functions: list[dict[str, Any]] = []
    for tool in _list(tools, "tools") if tools is not None else []:
        tool = _camel_keys(tool, ("function_declarations",)) if isinstance(tool, dict) else tool
        if not isinstance(tool, dict) or set(tool) != {"functionDeclarations"}:
            raise ApiError(400, "unsupported_field", "tools: batchgate takes functionDeclarations only")
        functions.extend(_declaration(d) for d in _list(tool["functionDeclarations"], "functionDeclarations"))
    if config is not None and not functions:
        raise ApiError(400, "invalid_request", "toolConfig: declare functions in tools first")
    if not functions:
        return {}
    fields: dict[str, Any] = {"tools": functions}
    config = _camel_keys(config, ("function_calling_config",)) if config is not None else {}
    if not isinstance(config, dict) or set(config) - {"functionCallingConfig"}:
        raise ApiError(400, "unsupported_field", "toolConfig: batchgate takes functionCallingConfig only")
    calling = _camel_keys(config.get("functionCallingConfig") or {}, ("allowed_function_names",))
    if not isinstance(calling, dict) or set(calling) - {"mode", "allowedFunctionNames"}:
        raise ApiError(400, "unsupported_field", "functionCallingConfig: mode and allowedFunctionNames only")
    mode = str(calling.get("mode") or "AUTO").upper()
    allowed = calling.get("allowedFunctionNames") or []
    if allowed and mode != "ANY":
        raise ApiError(400, "invalid_request", "allowedFunctionNames: only with mode ANY (as Gemini)")
    if mode == "NONE":
        fields["tool_choice"] = "none"
    elif mode == "ANY":
        if allowed:
            fields["tools"] = [f for f in functions if f.get("name") in allowed]
        fields["tool_choice"] = "required"
    elif mode not in ("AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        raise ApiError(
            400, "invalid_request", f"toolConfig.functionCallingConfig.mode: unknown mode {mode!r}"
        )
    return fields


def _declaration(declaration: Any) -> dict[str, Any]:
    if not isinstance(declaration, dict):
        raise ApiError(400, "invalid_request", "functionDeclarations: each must be an object")
    declaration = _camel_keys(declaration, ("parameters_json_schema", "response_json_schema"))
    # What a function returns (the SDK declares it from a Python function's annotation) only
    # informs the model; batchgate does not forward it.
    known = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema"}
    unknown = set(declaration) - known
    if unknown:
        raise ApiError(
            400,
            "unsupported_field",
            f"functionDeclarations: not supported by batchgate: {', '.join(sorted(unknown))}",
        )
    out = {k: declaration[k] for k in ("name", "description") if declaration.get(k) is not None}
    if declaration.get("parametersJsonSchema") is not None:
        out["parameters"] = declaration["parametersJsonSchema"]
    elif declaration.get("parameters") is not None:
        out["parameters"] = _json_schema(declaration["parameters"], "parameters")
    return out


def _output(config: dict[str, Any]) -> dict[str, Any]:
    """``responseMimeType``, ``responseSchema`` (Gemini's form) and ``responseJsonSchema`` as task fields."""
    mime = config.get("responseMimeType")
    schema = config.get("responseJsonSchema")
    if schema is None and config.get("responseSchema") is not None:
        schema = _json_schema(config["responseSchema"], "generationConfig.responseSchema")
    if mime not in (None, "text/plain", "application/json"):
        raise ApiError(
            400,
            "unsupported_field",
            f"generationConfig.responseMimeType {mime!r}: text/plain or application/json",
        )
    if schema is not None and mime != "application/json":
        raise ApiError(400, "invalid_request", "a response schema needs responseMimeType application/json")
    fields: dict[str, Any] = {}
    if mime is not None:
        fields["response_mime_type"] = mime
    if schema is not None:
        fields["response_schema"] = schema
    return fields


def _json_schema(schema: Any, where: str) -> dict[str, Any]:
    try:
        return from_gemini_schema(schema)
    except SchemaError as exc:
        raise ApiError(400, "invalid_request", f"{where}: {exc}") from None


def _camel_keys(data: Any, snake: tuple[str, ...]) -> Any:
    """``data`` with the given snake_case keys spelled in camelCase (Gemini takes both)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in snake:
        if key in out:
            head, *rest = key.split("_")
            out.setdefault(head + "".join(word.title() for word in rest), out.pop(key))
    return out


def _gemini_error(exc: ApiError) -> dict[str, Any]:
    """Gemini's error shape: ``{"error": {"code", "message", "status"}}``."""
    status = GEMINI_STATUS.get(exc.status, "UNKNOWN")
    return {"error": {"code": exc.status, "message": exc.message, "status": status}}


register_error_shape(bp, _gemini_error)
