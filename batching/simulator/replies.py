"""Gemini's REST answers: response bodies (whole or streamed), usage metadata and errors."""

from __future__ import annotations

from typing import Any

from batching.simulator.signatures import thought_signature_for

#: Number of SSE chunks a streamed answer is split into (fewer for short answers).
STREAM_CHUNKS = 3

RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def response_body(
    model: str,
    text: str,
    prompt_tokens: int,
    output_tokens: int,
    response_id: str,
    finish: str = "STOP",
    *,
    function_call: dict[str, Any] | None = None,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """Return a complete GenerateContentResponse carrying ``text``, or else ``function_call``
    (``{"name", "args"}``) as its one ``functionCall`` part; ``cached_tokens`` of the prompt
    came from the implicit cache."""
    part: dict[str, Any] = {"text": text}
    if function_call is not None:
        part = {"functionCall": function_call, "thoughtSignature": thought_signature_for(function_call)}
    return {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": finish, "index": 0}],
        "usageMetadata": usage(prompt_tokens, output_tokens, cached_tokens),
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
    model: str,
    text: str,
    prompt_tokens: int,
    output_tokens: int,
    response_id: str,
    finish: str = "STOP",
    *,
    function_call: dict[str, Any] | None = None,
    cached_tokens: int = 0,
) -> list[dict[str, Any]]:
    """Split an answer into streamed GenerateContentResponse chunks; the last one ends it. A
    function call is not split: one chunk carries it, the finish reason and the usage."""
    if function_call is not None:
        return [
            response_body(
                model,
                text,
                prompt_tokens,
                output_tokens,
                response_id,
                finish,
                function_call=function_call,
                cached_tokens=cached_tokens,
            )
        ]
    pieces = split_text(text, STREAM_CHUNKS)
    bodies: list[dict[str, Any]] = []
    for number, piece in enumerate(pieces, start=1):
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
        body: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        if number == len(pieces):
            candidate["finishReason"] = finish
            body["usageMetadata"] = usage(prompt_tokens, output_tokens, cached_tokens)
        bodies.append(body)
    return bodies


def split_text(text: str, count: int) -> list[str]:
    """Cut ``text`` into at most ``count`` non-empty pieces of similar length (one if empty)."""
    count = max(1, min(count, len(text)))
    bounds = [len(text) * i // count for i in range(count + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(count)]


def usage(prompt_tokens: int, output_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """Return ``usageMetadata`` in Gemini's shape: ``cachedContentTokenCount`` (part of
    ``promptTokenCount``, not added to it) only when some of the prompt was cached."""
    metadata: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }
    if cached_tokens:
        metadata["cachedContentTokenCount"] = cached_tokens
        metadata["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached_tokens}]
    return metadata


def error_body(
    code: int, status: str, message: str, retry_delay_s: int | None = None, details: tuple[Any, ...] = ()
) -> dict[str, Any]:
    """Return a google.rpc error body: ``details``, then RetryInfo when a retry delay is known."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    retry = () if retry_delay_s is None else ({"@type": RETRY_INFO_TYPE, "retryDelay": f"{retry_delay_s}s"},)
    if details or retry:
        error["details"] = [*details, *retry]
    return {"error": error}
