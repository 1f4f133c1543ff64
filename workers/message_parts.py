"""What a task message says beyond its text, as the engine takes it: turns with their parts,
the user turn's inline data and tool results, functions to call, structured output.

The message crossed a broker, so every shape is checked again here (``TypeError`` or
``ValueError`` fails that one task as ``invalid_message``); the API validated it first.
"""

from __future__ import annotations

from typing import Any

from batchgate import sessions
from batching.types import Output, Part, Tools, Turn

#: ``tool_choice`` as the task API spells it -> Gemini's function-calling mode.
TOOL_CHOICES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def history(turns: Any) -> tuple[Turn, ...]:
    """Earlier turns (``{"role", "text"?, "tool_calls"?, "tool_results"?}``), oldest first."""
    if turns is None:
        return ()
    if not isinstance(turns, list):
        raise TypeError("history must be a list")
    read: list[Turn] = []
    for turn in turns:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "model"):
            raise ValueError("history turns need a role of user or model")
        text = turn.get("text", "")
        if not isinstance(text, str):
            raise TypeError("history turns need a text")
        parts = [function_call(call) for call in _list(turn.get("tool_calls"))] + user_parts(turn)
        read.append((str(turn["role"]), sessions.Turn(str(turn["role"]), text, tuple(parts)).contents))
    return tuple(read)


def user_parts(body: dict[str, Any]) -> list[Part]:
    """A turn's inline data (``attachments``) and function responses (``tool_results``)."""
    parts: list[Part] = []
    for attachment in _list(body.get("attachments")):
        if not isinstance(attachment, dict):
            raise TypeError("attachments must be objects")
        mime, data = attachment.get("mime_type"), attachment.get("data")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise TypeError("an attachment needs a mime_type and base64 data")
        parts.append({"inline_data": {"mime_type": mime, "data": data}})
    for result in _list(body.get("tool_results")):
        if not isinstance(result, dict) or not isinstance(result.get("name"), str):
            raise TypeError("a tool result needs the function's name")
        response = result.get("response")
        if not isinstance(response, dict):
            raise TypeError("a tool result's response must be an object")
        entry: dict[str, Any] = {"name": result["name"], "response": response}
        if isinstance(result.get("id"), str):
            entry["id"] = result["id"]
        parts.append({"function_response": entry})
    return parts


def function_call(call: Any) -> Part:
    """A model turn's function call (``{"name", "args", "id"?, "thought_signature"?}``) as a part."""
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise TypeError("a tool call needs a name")
    args = call.get("args") or {}
    if not isinstance(args, dict):
        raise TypeError("a tool call's args must be an object")
    entry: dict[str, Any] = {"name": call["name"], "args": args}
    if isinstance(call.get("id"), str):
        entry["id"] = call["id"]
    part: Part = {"function_call": entry}
    if isinstance(call.get("thought_signature"), str):  # the model's, given back (Gemini 3 wants it)
        part["thought_signature"] = call["thought_signature"]
    return part


def tools(body: dict[str, Any]) -> Tools | None:
    """The functions the model may call, and how (``tools``, ``tool_choice``, ``parallel_tool_calls``)."""
    declared = _list(body.get("tools"))
    if not declared:
        return None
    functions = []
    for function in declared:
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise TypeError("a tool needs a name")
        functions.append({k: function[k] for k in ("name", "description", "parameters") if k in function})
    choice = body.get("tool_choice") or "auto"
    allowed: tuple[str, ...] = ()
    if isinstance(choice, dict):
        if not isinstance(choice.get("name"), str):
            raise TypeError("tool_choice names a function by its name")
        mode, allowed = "ANY", (choice["name"],)
    elif choice in TOOL_CHOICES:
        mode = TOOL_CHOICES[choice]
    else:
        raise ValueError(f"unknown tool_choice {choice!r}")
    return Tools(tuple(functions), mode, allowed, parallel=body.get("parallel_tool_calls") is not False)


def output(body: dict[str, Any]) -> Output | None:
    """Structured output asked for: a JSON Schema, or JSON of any shape."""
    schema = body.get("response_schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise TypeError("response_schema must be an object")
        return Output(schema)
    if body.get("response_mime_type") == "application/json":
        return Output()
    return None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value
