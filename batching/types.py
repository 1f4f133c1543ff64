"""Plain data passed into and out of the batch engine (no Celery, no Flask, no SDK)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("auto", "pack", "concurrent")

#: Gemini's finish reason of an answer that ended by itself: the only complete one.
COMPLETE = "STOP"


#: One part of a turn, as a JSON object in the google-genai SDK's snake_case form:
#: ``{"text": ...}``, ``{"inline_data": {"mime_type", "data" (base64)}}``,
#: ``{"function_call": {"name", "args", "id"?}}`` or ``{"function_response": {"name", "response", "id"?}}``.
Part = dict[str, Any]
#: A turn of a conversation: (role, parts), role ``user`` or ``model``.
Turn = tuple[str, tuple[Part, ...]]


@dataclass(frozen=True)
class Tools:
    """Functions the model may call, and how (the same for every request that shares a call)."""

    #: Function declarations: ``{"name", "description"?, "parameters"? (JSON Schema)}``.
    functions: tuple[dict[str, Any], ...]
    #: Gemini's ``functionCallingConfig.mode``: the model may call a function (AUTO), must call
    #: one (ANY), or must answer in text (NONE).
    mode: str = "AUTO"
    #: With mode ANY: the functions it may choose from (empty: any declared one).
    allowed: tuple[str, ...] = ()
    #: False: at most one function call per answer (the first the model makes).
    parallel: bool = True

    def as_json(self) -> dict[str, Any]:
        """The tools as plain JSON (for group keys and the packed prompt)."""
        return {
            "functions": list(self.functions),
            "mode": self.mode,
            "allowed": list(self.allowed),
            "parallel": self.parallel,
        }


@dataclass(frozen=True)
class Output:
    """Structured output: the answer is JSON, valid for ``schema`` (JSON Schema) when given."""

    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class InferenceRequest:
    """One client's request, as the engine sees it."""

    id: str
    prompt: str
    model: str
    system: str | None = None
    context: dict[str, Any] | None = None
    #: Gemini generation settings in snake_case: temperature, top_p, top_k,
    #: max_output_tokens, stop_sequences, seed, ...
    generation: dict[str, Any] = field(default_factory=dict)
    #: ``auto``, ``pack`` or ``concurrent``; None = the engine's default.
    strategy: str | None = None
    #: Prior turns of a conversation, oldest first; a request with history is sent alone,
    #: with its turns as Gemini contents.
    history: tuple[Turn, ...] = ()
    #: Parts of the user turn besides the prompt's text, sent before it: inline data
    #: (images) and function responses (the results of the model's function calls).
    parts: tuple[Part, ...] = ()
    #: Functions the model may call.
    tools: Tools | None = None
    #: Ask for JSON output (valid for a schema when it has one).
    output: Output | None = None
    #: Stream the answer: sent alone, its text chunks reported as they arrive.
    stream: bool = False
    #: Who the request belongs to: requests of different tenants never share a model call
    #: (unless ``PackingLimits.share_calls_across_tenants``).
    tenant: str = ""

    def group_key(self, default_strategy: str, across_tenants: bool = False) -> str:
        """Requests with the same key may share one model call."""
        return json.dumps(
            [
                None if across_tenants else self.tenant,
                self.model,
                self.system,
                self.generation,
                self.strategy or default_strategy,
                self.tools.as_json() if self.tools else None,
                None if self.output is None else {"schema": self.output.schema},
            ],
            sort_keys=True,
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class InferenceResult:
    """The outcome of one request: a text with its token usage, or an error."""

    id: str
    ok: bool
    model: str
    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    #: Of the input tokens, those Gemini served from its cache (``cachedContentTokenCount``).
    cached_input_tokens: int = 0
    error_code: str | None = None
    error_message: str | None = None
    #: Items that shared the model call that answered (or last failed) this request.
    items_in_call: int = 1
    #: Model calls this request was part of: retries, and calls again for it after a packed
    #: call could not answer it (a suspect or cut-off entry, a split refused call), included.
    attempts: int = 0
    #: Seconds from the engine receiving the batch to the answering call being sent.
    call_delay_s: float = 0.0
    #: Seconds the answering call took.
    model_s: float = 0.0
    #: Of those, the model server's own (``ModelReply.server_s``; None if it did not say).
    model_server_s: float | None = None
    #: Why the model stopped (Gemini's ``finishReason``: ``STOP``, ``MAX_TOKENS``, ``SAFETY``...;
    #: None when it did not say). An answer cut short is still an answer, but never cached.
    finish_reason: str | None = None
    #: The functions the model called instead of answering in text: ``{"name", "args", "id"?}``.
    function_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ModelCall:
    """One ``generateContent`` call, independent of the SDK."""

    model: str
    #: Text parts of the (last) user turn; the last one is the prompt itself.
    parts: tuple[str, ...]
    system: str | None = None
    #: Prior turns, sent before the user turn.
    history: tuple[Turn, ...] = ()
    generation: dict[str, Any] = field(default_factory=dict)
    #: When set, ask for JSON output that follows this (Gemini OpenAPI-subset) schema.
    response_schema: dict[str, Any] | None = None
    #: When set, ask for JSON output that follows this JSON Schema (``responseJsonSchema``).
    response_json_schema: dict[str, Any] | None = None
    #: Ask for JSON output without a schema.
    json_output: bool = False
    #: Parts of the user turn sent before its text (inline data, function responses).
    extra_parts: tuple[Part, ...] = ()
    tools: Tools | None = None


@dataclass(frozen=True)
class ModelReply:
    """What a model call returned."""

    text: str
    input_tokens: int
    output_tokens: int
    #: Gemini's ``finishReason`` of the candidate (None when it did not say).
    finish_reason: str | None = None
    #: Function calls of the candidate: ``{"name", "args", "id"?}``.
    function_calls: tuple[dict[str, Any], ...] = ()
    #: The model server's own time for the call, from its ``Server-Timing`` header (None if it
    #: sent none): what of ``model_s`` was the model's, the rest being the SDK and the network.
    server_s: float | None = None
    #: Of the input tokens, those served from Gemini's cache (``cachedContentTokenCount``).
    cached_tokens: int = 0


class ModelCallError(Exception):
    """A model call failed; ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
