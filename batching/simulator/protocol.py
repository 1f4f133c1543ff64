"""Gemini's REST wire format: reading a generateContent request, writing answers and errors.

Requests are accepted with camelCase or snake_case keys, as Google's own endpoint does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batching.tokens import estimate_tokens

#: Number of SSE chunks a streamed answer is split into (fewer for short answers).
STREAM_CHUNKS = 3

RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


class BadRequest(ValueError):
    """A request body Gemini would reject with 400 INVALID_ARGUMENT."""


@dataclass(frozen=True)
class GenerateRequest:
    """What the simulator needs from a generateContent body."""

    #: The last text part of the last user turn: the prompt that is answered.
    prompt: str
    #: Every text of the system instruction and all turns, for input-token accounting.
    texts: tuple[str, ...]
    response_mime_type: str | None = None
    #: ``responseSchema`` (Gemini's OpenAPI subset) or else ``responseJsonSchema``.
    response_schema: Any = None
    #: ``maxOutputTokens``: a longer answer is cut there, with finish reason ``MAX_TOKENS``.
    max_output_tokens: int | None = None

    @property
    def json_mode(self) -> bool:
        """True when the caller asked for JSON output."""
        return (self.response_mime_type or "").lower() == "application/json"

    @property
    def prompt_tokens(self) -> int:
        """Estimated input tokens of the whole request."""
        return sum(estimate_tokens(text) for text in self.texts)


def parse_generate_request(body: Any) -> GenerateRequest:
    """Read a decoded JSON body, raising ``BadRequest`` where Gemini would answer 400."""
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload: the request body must be a JSON object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    system = _get(body, "systemInstruction", "system_instruction")
    if isinstance(system, str):
        texts.append(system)
    elif system is not None:
        texts.extend(_content_texts(system, "systemInstruction"))
    prompt: str | None = None
    for index, content in enumerate(contents):
        content_texts = _content_texts(content, f"contents[{index}]")
        texts.extend(content_texts)
        if content.get("role") in (None, "", "user"):
            prompt = content_texts[-1] if content_texts else ""
    if prompt is None:
        raise BadRequest("* GenerateContentRequest.contents: no content with role 'user'")
    config = _get(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, dict):
        raise BadRequest("Invalid JSON payload: generationConfig must be an object.")
    mime = _get(config, "responseMimeType", "response_mime_type")
    if mime is not None and not isinstance(mime, str):
        raise BadRequest("Invalid value at 'generation_config.response_mime_type': must be a string.")
    schema = _get(config, "responseSchema", "response_schema")
    if schema is None:
        schema = _get(config, "responseJsonSchema", "response_json_schema")
    if schema is not None and mime is None:
        raise BadRequest("responseSchema requires responseMimeType 'application/json' or 'text/x.enum'.")
    limit = _get(config, "maxOutputTokens", "max_output_tokens")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        limit = None  # not a limit the simulator can apply
    return GenerateRequest(
        prompt=prompt,
        texts=tuple(texts),
        response_mime_type=mime,
        response_schema=schema,
        max_output_tokens=limit,
    )


def response_body(
    model: str, text: str, prompt_tokens: int, output_tokens: int, response_id: str, finish: str = "STOP"
) -> dict[str, Any]:
    """Return a complete GenerateContentResponse carrying ``text``."""
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish, "index": 0}
        ],
        "usageMetadata": usage(prompt_tokens, output_tokens),
        "modelVersion": model,
        "responseId": response_id,
    }


def blocked_body(model: str, prompt_tokens: int, response_id: str, reason: str) -> dict[str, Any]:
    """Return Gemini's answer to a blocked prompt: no candidates, ``promptFeedback.blockReason``."""
    return {
        "promptFeedback": {"blockReason": reason},
        "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        "modelVersion": model,
        "responseId": response_id,
    }


def stream_bodies(
    model: str, text: str, prompt_tokens: int, output_tokens: int, response_id: str, finish: str = "STOP"
) -> list[dict[str, Any]]:
    """Split an answer into streamed GenerateContentResponse chunks; the last one ends it."""
    pieces = split_text(text, STREAM_CHUNKS)
    bodies: list[dict[str, Any]] = []
    for number, piece in enumerate(pieces, start=1):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
        body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        if number == len(pieces):
            candidate["finishReason"] = finish
            body["usageMetadata"] = usage(prompt_tokens, output_tokens)
        bodies.append(body)
    return bodies


def split_text(text: str, count: int) -> list[str]:
    """Cut ``text`` into at most ``count`` non-empty pieces of similar length (one if empty)."""
    count = max(1, min(count, len(text)))
    bounds = [len(text) * i // count for i in range(count + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(count)]


def usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    """Return ``usageMetadata`` in Gemini's shape."""
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }


def error_body(code: int, status: str, message: str, retry_delay_s: int | None = None) -> dict[str, Any]:
    """Return a google.rpc error body, with RetryInfo when a retry delay is known."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if retry_delay_s is not None:
        error["details"] = [{"@type": RETRY_INFO_TYPE, "retryDelay": f"{retry_delay_s}s"}]
    return {"error": error}


def _get(data: dict[str, Any], camel: str, snake: str) -> Any:
    return data[camel] if data.get(camel) is not None else data.get(snake)


def _content_texts(content: Any, where: str) -> list[str]:
    if not isinstance(content, dict):
        raise BadRequest(f"Invalid JSON payload: {where} must be a Content object.")
    parts = content.get("parts", [])
    if not isinstance(parts, list):
        raise BadRequest(f"Invalid JSON payload: {where}.parts must be a list.")
    texts: list[str] = []
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise BadRequest(f"Invalid JSON payload: {where}.parts[{index}] must be a Part object.")
        text = part.get("text")
        if text is None:
            continue
        if not isinstance(text, str):
            raise BadRequest(f"Invalid value at '{where}.parts[{index}].text': must be a string.")
        if not part.get("thought"):
            texts.append(text)
    return texts
