"""The corpus of malformed requests, each with the status and error code the API documents for it
(under the limits below, which the test stack runs with)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_BYTES = 65_536
MAX_PROMPT_CHARS = 2_000
MAX_CONTEXT_CHARS = 2_000

TASKS = "/api/v1/tasks"
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"
OPENAI = "/v1/chat/completions"
PREFERENCES = "/api/v1/users/ada/preferences"
#: Stands for the stack's valid key in a case's headers.
KEY = "<key>"
JSON_HEADERS = {"Content-Type": "application/json", "X-API-Key": KEY}


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes | None
    status: int
    #: The error code expected (batchgate's ``error.code``, OpenAI's ``error.code`` or Gemini's
    #: ``error.status``); None: any.
    code: str | None
    path: str = TASKS
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))
    #: Which error shape: "own", "gemini" or "openai".
    shape: str = "own"


def task(**fields: Any) -> bytes:
    return json.dumps({"prompt": "Name a colour", **fields}).encode()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def headers(**changes: str | None) -> dict[str, str]:
    """JSON_HEADERS with ``changes`` (``X_API_Key`` names ``X-API-Key``; None removes it)."""
    merged: dict[str, str | None] = {**JSON_HEADERS, **{k.replace("_", "-"): v for k, v in changes.items()}}
    return {name: value for name, value in merged.items() if value is not None}


def gemini(body: bytes | None, status: int, code: str | None, name: str, **changes: str | None) -> Case:
    return Case(name, body, status, code, path=GEMINI, headers=headers(**changes), shape="gemini")


def openai(body: bytes | None, status: int, code: str | None, name: str, **changes: str | None) -> Case:
    return Case(name, body, status, code, path=OPENAI, headers=headers(**changes), shape="openai")


GEMINI_OK = json.dumps({"contents": [{"role": "user", "parts": [{"text": "Name a colour"}]}]}).encode()
OPENAI_OK = json.dumps(
    {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "Hi"}]}
).encode()

CORPUS = [
    # --- not JSON, or not JSON we can store ---------------------------------------------------
    Case("truncated JSON", b'{"prompt": "x"', 400, "invalid_json"),
    Case("trailing comma", b'{"prompt": "x",}', 400, "invalid_json"),
    Case("single quotes", b"{'prompt': 'x'}", 400, "invalid_json"),
    Case("empty body", b"", 400, "invalid_json"),
    Case("whitespace body", b"  \n ", 400, "invalid_json"),
    Case("two documents", b'{"prompt": "x"} {"prompt": "y"}', 400, "invalid_json"),
    Case("bad UTF-8 bytes", b'{"prompt": "\xff\xfe"}', 400, "invalid_json"),
    Case("overlong UTF-8", b'{"prompt": "\xc0\xaf"}', 400, "invalid_json"),
    Case("UTF-8 encoded surrogate", b'{"prompt": "\xed\xa0\x80"}', 400, "invalid_json"),
    Case("escaped lone surrogate", b'{"prompt": "\\ud800"}', 400, "invalid_json"),
    Case(
        "lone surrogate in a context key", b'{"prompt": "x", "context": {"\\udfff": 1}}', 400, "invalid_json"
    ),
    Case("raw NUL byte in a string", b'{"prompt": "a\x00b"}', 400, "invalid_json"),
    Case("NUL byte after the document", b'{"prompt": "x"}\x00', 400, "invalid_json"),
    Case("NaN literal", b'{"prompt": "x", "context": {"a": NaN}}', 400, "invalid_json"),
    Case(
        "Infinity literal", b'{"prompt": "x", "generation": {"temperature": Infinity}}', 400, "invalid_json"
    ),
    Case("-Infinity literal", b'{"prompt": "x", "generation": {"seed": -Infinity}}', 400, "invalid_json"),
    Case("float overflowing to infinity", b'{"prompt": "x", "context": {"n": 1e400}}', 400, "invalid_json"),
    Case(
        "5000-digit integer",
        b'{"prompt": "x", "generation": {"top_k": ' + b"9" * 5000 + b"}}",
        400,
        "invalid_json",
    ),
    Case("arrays nested 30,000 deep", b"[" * 30_000 + b"]" * 30_000, 400, "invalid_json"),
    Case("context nested 65 deep", task(context=nested(64)), 400, "invalid_json"),
    Case("JSON null", b"null", 400, "invalid_json"),
    # --- JSON, but not a task ----------------------------------------------------------------
    Case("JSON array", b"[]", 422, "invalid_request"),
    Case("JSON string", b'"Name a colour"', 422, "invalid_request"),
    Case("JSON number", b"42", 422, "invalid_request"),
    Case("JSON true", b"true", 422, "invalid_request"),
    Case("missing prompt", b"{}", 422, "invalid_request"),
    Case("empty prompt", task(prompt=""), 422, "invalid_request"),
    Case("blank prompt", task(prompt=" \t\n "), 422, "invalid_request"),
    Case("unknown field", task(temperature=0.2), 422, "invalid_request"),
    Case("unknown generation field", task(generation={"candidate_count": 2}), 422, "invalid_request"),
    # --- wrong types (no coercion) -------------------------------------------------------------
    Case("prompt: number", task(prompt=1), 422, "invalid_request"),
    Case("prompt: list", task(prompt=["x"]), 422, "invalid_request"),
    Case("system: number", task(system=1), 422, "invalid_request"),
    Case("context: list", task(context=[1]), 422, "invalid_request"),
    Case("context: string", task(context="ticket"), 422, "invalid_request"),
    Case("model: number", task(model=1), 422, "invalid_request"),
    Case("model: bad name", task(model="../etc/passwd"), 422, "invalid_request"),
    Case("generation: string", task(generation="hot"), 422, "invalid_request"),
    Case("temperature: string", task(generation={"temperature": "0.5"}), 422, "invalid_request"),
    Case("temperature: bool", task(generation={"temperature": True}), 422, "invalid_request"),
    Case("top_k: float", task(generation={"top_k": 1.5}), 422, "invalid_request"),
    Case("top_k: string", task(generation={"top_k": "5"}), 422, "invalid_request"),
    Case("max_output_tokens: bool", task(generation={"max_output_tokens": True}), 422, "invalid_request"),
    Case("stop_sequences: string", task(generation={"stop_sequences": "stop"}), 422, "invalid_request"),
    Case("stop_sequences: numbers", task(generation={"stop_sequences": [1]}), 422, "invalid_request"),
    Case("seed: float", task(generation={"seed": 1.5}), 422, "invalid_request"),
    Case("strategy: unknown", task(strategy="fast"), 422, "invalid_request"),
    Case("cache: string", task(cache="false"), 422, "invalid_request"),
    Case("cache: 0", task(cache=0), 422, "invalid_request"),
    Case("stream: 1", task(stream=1), 422, "invalid_request"),
    Case("session_id: number", task(session_id=5), 422, "invalid_request"),
    Case("session_id: space", task(session_id="my session"), 422, "invalid_request"),
    Case("session_id: 129 characters", task(session_id="s" * 129), 422, "invalid_request"),
    Case("user_id: list", task(user_id=["ada"]), 422, "invalid_request"),
    Case(
        "history: a role of OpenAI's",
        task(history=[{"role": "assistant", "text": "Hi"}]),
        422,
        "invalid_request",
    ),
    Case(
        "history and session_id",
        task(history=[{"role": "user", "text": "Hi"}], session_id="s1"),
        422,
        "invalid_request",
    ),
    Case("user_id: leading dash", task(user_id="-ada"), 422, "invalid_request"),
    # --- out of bounds ---------------------------------------------------------------------------
    Case("temperature above 2", task(generation={"temperature": 2.5}), 422, "invalid_request"),
    Case("top_p 0", task(generation={"top_p": 0}), 422, "invalid_request"),
    Case("top_k 0", task(generation={"top_k": 0}), 422, "invalid_request"),
    Case("max_output_tokens huge", task(generation={"max_output_tokens": 10**30}), 422, "invalid_request"),
    Case("six stop sequences", task(generation={"stop_sequences": ["a"] * 6}), 422, "invalid_request"),
    Case("seed beyond int32", task(generation={"seed": 2**31}), 422, "invalid_request"),
    Case("temperature 1e308", task(generation={"temperature": 1e308}), 422, "invalid_request"),
    Case("presence_penalty below -2", task(generation={"presence_penalty": -3}), 422, "invalid_request"),
    Case("prompt too long", task(prompt="x" * (MAX_PROMPT_CHARS + 1)), 422, "prompt_too_long"),
    Case("context too long", task(context={"t": "x" * MAX_CONTEXT_CHARS}), 422, "context_too_long"),
    Case("body too large", task(context={"t": "x" * MAX_BODY_BYTES}), 413, "body_too_large"),
    Case(
        "Idempotency-Key too long",
        task(),
        422,
        "invalid_idempotency_key",
        headers=headers(Idempotency_Key="k" * 256),
    ),
    # --- keys --------------------------------------------------------------------------------
    Case("no key", task(), 401, "missing_api_key", headers=headers(X_API_Key=None)),
    Case("no key, bad body", b"{", 401, "missing_api_key", headers=headers(X_API_Key=None)),
    Case("no key, wrong content type", b"x", 401, "missing_api_key", headers={"Content-Type": "text/plain"}),
    Case("empty key", task(), 401, "missing_api_key", headers=headers(X_API_Key="")),
    Case("blank key", task(), 401, "missing_api_key", headers=headers(X_API_Key="   ")),
    Case("unknown key", task(), 401, "invalid_api_key", headers=headers(X_API_Key="bg_not-a-key")),
    Case(
        "unknown Bearer key",
        task(),
        401,
        "invalid_api_key",
        headers=headers(X_API_Key=None, Authorization="Bearer x"),
    ),
    Case("key of 4,000 characters", task(), 401, "invalid_api_key", headers=headers(X_API_Key="k" * 4_000)),
    # --- content types -------------------------------------------------------------------------
    Case("text/plain", task(), 415, "unsupported_media_type", headers=headers(Content_Type="text/plain")),
    Case("no content type", task(), 415, "unsupported_media_type", headers=headers(Content_Type=None)),
    Case(
        "form encoded",
        b"prompt=x",
        415,
        "unsupported_media_type",
        headers=headers(Content_Type="application/x-www-form-urlencoded"),
    ),
    Case(
        "multipart",
        b"--b\r\nContent-Disposition: form-data; name=prompt\r\n\r\nx\r\n--b--\r\n",
        415,
        "unsupported_media_type",
        headers=headers(Content_Type="multipart/form-data; boundary=b"),
    ),
    Case(
        "XML",
        b"<prompt>x</prompt>",
        415,
        "unsupported_media_type",
        headers=headers(Content_Type="application/xml"),
    ),
    # --- query parameters ----------------------------------------------------------------------
    Case("wait: not a number", task(), 400, "invalid_wait", path="/api/v1/task?wait=soon"),
    Case("wait: negative", task(), 400, "invalid_wait", path="/api/v1/task?wait=-1"),
    Case("wait: NaN", task(), 400, "invalid_wait", path="/api/v1/task?wait=nan"),
    Case(
        "wait: not a number, no key",
        task(),
        401,
        "missing_api_key",
        path="/api/v1/task?wait=soon",
        headers=headers(X_API_Key=None),
    ),
    Case(
        "poll wait: not a number",
        None,
        400,
        "invalid_wait",
        method="GET",
        path="/api/v1/tasks/" + "0" * 32 + "?wait=soon",
    ),
    Case(
        "poll wait: not a number, no key",
        None,
        401,
        "missing_api_key",
        method="GET",
        path="/api/v1/tasks/" + "0" * 32 + "?wait=soon",
        headers={},
    ),
    # --- preferences -----------------------------------------------------------------------------
    Case(
        "preferences: truncated JSON", b'{"language": ', 400, "invalid_json", method="PUT", path=PREFERENCES
    ),
    Case(
        "preferences: NaN",
        b'{"generation": {"temperature": NaN}}',
        400,
        "invalid_json",
        method="PUT",
        path=PREFERENCES,
    ),
    Case("preferences: list", b"[]", 422, "invalid_request", method="PUT", path=PREFERENCES),
    Case(
        "preferences: unknown field",
        b'{"colour": "red"}',
        422,
        "invalid_request",
        method="PUT",
        path=PREFERENCES,
    ),
    Case(
        "preferences: wrong type", b'{"language": 5}', 422, "invalid_request", method="PUT", path=PREFERENCES
    ),
    Case(
        "preferences: bad user id",
        b'{"language": "French"}',
        422,
        "invalid_request",
        method="PUT",
        path="/api/v1/users/-ada/preferences",
    ),
    Case(
        "preferences: text/plain",
        b"{}",
        415,
        "unsupported_media_type",
        method="PUT",
        path=PREFERENCES,
        headers=headers(Content_Type="text/plain"),
    ),
    Case(
        "preferences: no key",
        b"{}",
        401,
        "missing_api_key",
        method="PUT",
        path=PREFERENCES,
        headers=headers(X_API_Key=None),
    ),
    # --- the Gemini drop-in (Gemini's error shape; code is error.status) -----------------------
    gemini(b'{"contents": [', 400, "INVALID_ARGUMENT", "gemini: truncated JSON"),
    gemini(b'{"contents": NaN}', 400, "INVALID_ARGUMENT", "gemini: NaN"),
    gemini(b"[]", 400, "INVALID_ARGUMENT", "gemini: not an object"),
    gemini(GEMINI_OK, 401, "UNAUTHENTICATED", "gemini: no key", X_API_Key=None),
    gemini(b"{", 401, "UNAUTHENTICATED", "gemini: no key, bad body", X_API_Key=None),
    gemini(GEMINI_OK, 401, "UNAUTHENTICATED", "gemini: unknown key", X_API_Key=None, x_goog_api_key="nope"),
    gemini(b'{"contents": [], "cachedContent": "c/1"}', 400, "INVALID_ARGUMENT", "gemini: unknown field"),
    gemini(
        b'{"contents": [{"role": "user", "parts": [{"inlineData": {}}]}]}',
        400,
        "INVALID_ARGUMENT",
        "gemini: empty inlineData",
    ),
    gemini(
        b'{"contents": [{"role": "model", "parts": [{"text": "hi"}]}]}',
        400,
        "INVALID_ARGUMENT",
        "gemini: ends with a model turn",
    ),
    gemini(
        b'{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"topK": "5"}}',
        400,
        "INVALID_ARGUMENT",
        "gemini: topK string",
    ),
    gemini(GEMINI_OK, 400, "INVALID_ARGUMENT", "gemini: text/plain", Content_Type="text/plain"),
    # --- the OpenAI drop-in (OpenAI's error shape) ---------------------------------------------
    openai(b'{"model": ', 400, "invalid_json", "openai: truncated JSON"),
    openai(
        b'{"model": "m", "messages": [], "temperature": Infinity}', 400, "invalid_json", "openai: Infinity"
    ),
    openai(OPENAI_OK, 401, "missing_api_key", "openai: no key", X_API_Key=None),
    openai(b"{", 401, "missing_api_key", "openai: no key, bad body", X_API_Key=None),
    openai(
        OPENAI_OK, 401, "invalid_api_key", "openai: unknown key", X_API_Key=None, Authorization="Bearer nope"
    ),
    openai(
        b'{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}], "n": 2}',
        400,
        "unsupported_parameter",
        "openai: n=2",
    ),
    openai(
        b'{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}], "logprobs": true}',
        400,
        "unsupported_parameter",
        "openai: logprobs",
    ),
    openai(b'{"model": "gemini-2.5-flash", "messages": []}', 400, "invalid_request", "openai: no messages"),
]
