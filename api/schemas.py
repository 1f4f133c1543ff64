"""The shape of a task request, validated before anything is enqueued."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from api.errors import ApiError
from api.generation import MODEL_NAME, Generation
from batching.structured import SchemaError, check_schema

#: Client-chosen ids (sessions, users): safe in Redis keys, URLs and logs.
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


#: A function name as Gemini accepts it.
FUNCTION_NAME = r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,127}$"
#: Inline data Gemini reads: images, audio, video, PDF and plain text.
MIME_TYPE = r"^((image|audio|video)/[A-Za-z0-9.+\-]{1,64}|application/pdf|text/plain)$"
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")
#: Base64 in either alphabet, padding optional (as Gemini writes thought signatures).
BASE64_PATTERN = r"^[A-Za-z0-9+/\-_]+={0,2}$"


class ToolCall(BaseModel):
    """A function call the model made (a model turn of a conversation carries it back)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=FUNCTION_NAME)
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, max_length=256)
    #: The model's signature of the call (base64), as the result gave it: Gemini 3 wants it back.
    thought_signature: str | None = Field(default=None, max_length=65_536, pattern=BASE64_PATTERN)


class ToolResult(BaseModel):
    """What a function the model called returned: the next user turn carries it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=FUNCTION_NAME)
    response: dict[str, Any]
    id: str | None = Field(default=None, max_length=256)


class Attachment(BaseModel):
    """Inline data sent with the prompt (an image, a PDF...): base64 in ``data``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mime_type: str = Field(pattern=MIME_TYPE)
    data: str = Field(min_length=1)

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        if len(value) % 4 or not _BASE64.fullmatch(value):
            raise ValueError("must be base64 (padded)")
        return value.replace("-", "+").replace("_", "/")  # the URL-safe alphabet, as Gemini reads it


class FunctionTool(BaseModel):
    """A function the model may call: its arguments follow ``parameters`` (JSON Schema)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] | None = None

    @field_validator("parameters")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _checked_schema(value)


class ToolChoiceFunction(BaseModel):
    """``tool_choice`` naming the one function the model must call."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=FUNCTION_NAME)


class Turn(BaseModel):
    """An earlier turn of a conversation the client holds itself."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "model"]
    text: str = ""
    #: A model turn's function calls.
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=128)
    #: A user turn's results of those calls.
    tool_results: list[ToolResult] | None = Field(default=None, max_length=128)
    attachments: list[Attachment] | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _roles(self) -> Turn:
        if "text" not in self.model_fields_set and not (
            self.tool_calls or self.tool_results or self.attachments
        ):
            raise ValueError("a turn needs a text, tool_calls, tool_results or attachments")
        if self.tool_calls and self.role != "model":
            raise ValueError("tool_calls belong to a model turn")
        if (self.tool_results or self.attachments) and self.role != "user":
            raise ValueError("tool_results and attachments belong to a user turn")
        return self


class TaskRequest(BaseModel):
    """``POST /api/v1/tasks`` body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: The user's text; may be left out of a turn that carries ``tool_results``.
    prompt: str = ""
    system: str | None = Field(default=None, max_length=100_000)
    context: dict[str, Any] | None = None
    model: str | None = Field(default=None, pattern=MODEL_NAME)
    generation: Generation | None = None
    strategy: Literal["auto", "pack", "concurrent"] | None = None
    #: False: neither read nor write the response cache for this request.
    cache: bool | None = None
    #: Stream the model's answer: its chunks arrive as ``delta`` events (the task gets a
    #: model call of its own instead of sharing one).
    stream: bool | None = None
    #: A conversation kept by batchgate: prior turns are sent with the prompt, and this turn
    #: is appended.
    session_id: str | None = Field(default=None, pattern=IDENTIFIER)
    #: A conversation the client keeps: earlier turns, oldest first, sent to the model as turns.
    history: list[Turn] | None = Field(default=None, max_length=1000)
    #: Whose stored preferences fill in the fields this request leaves out.
    user_id: str | None = Field(default=None, pattern=IDENTIFIER)
    #: Inline data sent with the prompt (images, PDF, audio), base64.
    attachments: list[Attachment] | None = Field(default=None, max_length=16)
    #: Functions the model may call instead of answering in text (its calls come back in
    #: the result's ``tool_calls``; their results go in the next turn's ``tool_results``).
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    #: ``auto`` (the model decides), ``none``, ``required``, or ``{"name": ...}`` (that one).
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction | None = None
    #: False: at most one function call per answer.
    parallel_tool_calls: bool | None = None
    #: This turn's results of the model's function calls (the previous turn's ``tool_calls``).
    tool_results: list[ToolResult] | None = Field(default=None, max_length=128)
    #: The answer is JSON valid for this JSON Schema (or the task fails ``invalid_structured_output``).
    response_schema: dict[str, Any] | None = None
    #: ``application/json``: the answer is JSON (of any shape, unless ``response_schema``).
    response_mime_type: Literal["application/json", "text/plain"] | None = None
    #: ``bulk``: answered through Gemini's Batch API at half price, within hours (its target
    #: is 24); ``interactive`` (the default): now.
    lane: Literal["interactive", "bulk"] | None = None

    @field_validator("response_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _checked_schema(value)

    @model_validator(mode="after")
    def _consistent(self) -> TaskRequest:
        names = [tool.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise ValueError("tools: function names must be unique")
        if self.tool_choice is not None and not self.tools:
            raise ValueError("tool_choice: give tools to choose from")
        if isinstance(self.tool_choice, ToolChoiceFunction) and self.tool_choice.name not in names:
            raise ValueError(f"tool_choice: no tool is named {self.tool_choice.name!r}")
        if not self.session_id:  # a session's earlier turns are in Redis: the worker has them
            _check_tool_turns(self.history or [], len(self.tool_results or []))
        if self.response_schema is not None and self.response_mime_type == "text/plain":
            raise ValueError("response_schema: needs response_mime_type application/json (or none)")
        if self.lane == "bulk" and (self.stream or self.session_id):
            raise ValueError("lane: a bulk task cannot stream or be a turn of a session")
        return self

    def to_message(self) -> dict[str, Any]:
        """The request as it travels to the worker: only the fields the client set."""
        return self.model_dump(exclude_none=True, exclude={"cache"})


def _check_tool_turns(history: list[Turn], results_now: int) -> None:
    """Each model turn's ``tool_calls`` are answered by the next turn's ``tool_results``, one
    result per call, and results answer nothing else (Gemini refuses any other conversation)."""
    calls = [len(turn.tool_calls or []) for turn in history]
    results = [len(turn.tool_results or []) for turn in history] + [results_now]
    for index, answered in enumerate(results):
        asked = calls[index - 1] if index > 0 else 0
        if asked != answered:
            where = "tool_results" if index == len(history) else "history"
            raise ValueError(
                f"{where}: the {asked} tool_calls of the model turn before must be answered by "
                f"this turn's tool_results, one per call (got {answered})"
            )


def _checked_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a JSON Schema: {exc}") from None


def parse_task_request(body: Any, max_prompt_chars: int, max_context_chars: int) -> TaskRequest:
    """Validate a decoded JSON body; raise a 422 ApiError naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    try:
        request = TaskRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")  # our own validators' words
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(422, "invalid_request", f"{where}: {message}" if where else message) from None
    if not request.prompt.strip() and not request.tool_results and not request.attachments:
        raise ApiError(
            422,
            "invalid_request",
            "prompt: must not be blank (unless the turn carries tool_results or attachments)",
        )
    if len(request.prompt) > max_prompt_chars:
        raise ApiError(422, "prompt_too_long", f"prompt: longer than {max_prompt_chars} characters")
    if request.context is not None:
        size = len(json.dumps(request.context, ensure_ascii=False))
        if size > max_context_chars:
            raise ApiError(
                422, "context_too_long", f"context: longer than {max_context_chars} characters as JSON"
            )
    if request.history:
        if request.session_id:
            raise ApiError(
                422,
                "invalid_request",
                "history: give either history or session_id (its history is kept for you)",
            )
        if sum(len(turn.text) for turn in request.history) > max_context_chars:
            raise ApiError(422, "context_too_long", f"history: longer than {max_context_chars} characters")
    return request
