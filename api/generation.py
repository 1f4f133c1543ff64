"""Generation settings a client may set: shared by task requests and stored preferences.

No Flask here, so the preference store (``api.preferences``) validates with the
same fields and bounds as ``POST /api/v1/tasks``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: A Gemini model name as a request or a preference may give it.
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"


class Generation(BaseModel):
    """Gemini generation settings a client may set (snake_case, as the SDK names them)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    max_output_tokens: int | None = Field(default=None, ge=1, le=65536)
    stop_sequences: list[str] | None = Field(default=None, max_length=5)
    #: Gemini's seed is an int32: a larger one would fail at the model, after queueing.
    seed: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
