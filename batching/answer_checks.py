"""Whether a model's answer does for the request it answers: JSON valid for the request's
schema, calls of functions it offers with arguments their parameters take, a call where one
is required. What does not is answered again (alone) or fails with a clear code."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from batching.packed_prompt import PackedAnswers
from batching.structured import invalid_answer, invalid_value
from batching.types import InferenceRequest, ModelReply, Tools


def unfit_answer(request: InferenceRequest, reply: ModelReply) -> tuple[str, str] | None:
    """Why a text answer does not do for ``request``, as (error code, message); None when it
    does. Text where a function call was required, or not JSON valid for the schema."""
    if request.tools is not None and request.tools.mode == "ANY":
        return "missing_function_call", "the model answered in text where a function call was required"
    if request.output is None:
        return None
    why = invalid_answer(reply.text, request.output.schema)
    return None if why is None else ("invalid_structured_output", why)


def unfit_entry(request: InferenceRequest, answers: PackedAnswers, item: str) -> bool:
    """True when a packed entry read for ``request`` cannot be its answer: calls of functions
    it does not offer or with arguments its parameters refuse, text where it must call one, or
    an answer that is not valid for its schema. Such an item is answered again alone."""
    calls = answers.calls.get(item, ())
    tools = request.tools
    if calls:
        if tools is None or tools.mode == "NONE":
            return True
        declared = {str(f["name"]): f for f in tools.functions}
        allowed = set(tools.allowed) or set(declared)
        for call in calls:
            function = declared.get(call["name"])
            if function is None or call["name"] not in allowed:
                return True
            parameters = function.get("parameters")
            if isinstance(parameters, dict) and invalid_value(call["args"], parameters):
                return True
        return False
    return unfit_answer(request, ModelReply(answers.trusted[item], 0, 0)) is not None


def sendable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema as Gemini takes it: without ``$schema`` (the dialect is always 2020-12)."""
    return {key: value for key, value in schema.items() if key != "$schema"}


def entry_text(answers: PackedAnswers, item: str) -> str:
    calls = answers.calls.get(item)
    return json.dumps(calls) if calls else answers.trusted[item]


def kept_calls(calls: Sequence[dict[str, object]], tools: Tools | None) -> tuple[dict[str, object], ...]:
    """The model's function calls as answered, each with an id (Gemini's, or a new one): only
    the first when the request asked for no parallel calls."""
    if tools is None or not calls:
        return ()
    kept = calls if tools.parallel else calls[:1]
    return tuple({**call, "id": call.get("id") or f"call_{secrets.token_hex(12)}"} for call in kept)
