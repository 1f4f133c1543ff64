"""The shape of a task request, validated before anything is enqueued."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.errors import ApiError
from batchgate.generation import MODEL_NAME, Generation

#: Client-chosen ids (sessions, users): safe in Redis keys, URLs and logs.
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"


class Turn(BaseModel):
    """An earlier turn of a conversation the client holds itself."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "model"]
    text: str


class TaskRequest(BaseModel):
    """``POST /api/v1/tasks`` body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1)
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

    def to_message(self) -> dict[str, Any]:
        """The request as it travels to the worker: only the fields the client set."""
        return self.model_dump(exclude_none=True, exclude={"cache"})


def parse_task_request(body: Any, max_prompt_chars: int, max_context_chars: int) -> TaskRequest:
    """Validate a decoded JSON body; raise a 422 ApiError naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    try:
        request = TaskRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from None
    if not request.prompt.strip():
        raise ApiError(422, "invalid_request", "prompt: must not be blank")
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
