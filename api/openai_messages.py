"""OpenAI chat messages and agent options as task fields: the conversation's turns (text,
images from ``data:`` URLs, tool calls and the tool messages that answer them), ``tools``,
``tool_choice``, ``parallel_tool_calls`` and ``response_format``."""

from __future__ import annotations

import json
import re
from typing import Any

from api.errors import ApiError

_DATA_URL = re.compile(r"^data:(?P<mime>[A-Za-z0-9.+/\-]+);base64,(?P<data>.*)$", re.DOTALL)


def turns(messages: list[Any]) -> list[dict[str, Any]]:
    """The conversation as task turns: ``assistant`` messages become model turns (text and
    ``tool_calls``), ``user`` messages user turns (text and images), and each run of ``tool``
    messages one user turn of ``tool_results`` (named after the call each one answers)."""
    turns: list[dict[str, Any]] = []
    called: dict[str, str] = {}  # tool call id -> function name
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, "invalid_request", "each message needs a role")
        role = message["role"]
        if role == "user":
            turns.append(_user_turn(message.get("content")))
        elif role == "assistant":
            turn: dict[str, Any] = {
                "role": "model",
                "text": message_text(message.get("content"), role, empty=True),
            }
            calls = [_tool_call(call) for call in message.get("tool_calls") or []]
            if calls:
                turn["tool_calls"] = calls
                called.update((call["id"], call["name"]) for call in calls)
            turns.append(turn)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in called:
                raise ApiError(
                    400,
                    "invalid_request",
                    "a tool message must answer a tool_call_id of an earlier assistant message",
                )
            result = {
                "name": called[call_id],
                "id": call_id,
                "response": _tool_response(message.get("content")),
            }
            if turns and turns[-1]["role"] == "user" and turns[-1].get("tool_results"):
                turns[-1]["tool_results"].append(result)
            else:
                turns.append({"role": "user", "text": "", "tool_results": [result]})
        else:
            raise ApiError(400, "invalid_request", f"messages: role {role!r} is not supported by batchgate")
    return turns


def _user_turn(content: Any) -> dict[str, Any]:
    """A user message: its text, and its images (``image_url`` parts with ``data:`` URLs)."""
    if isinstance(content, str):
        return {"role": "user", "text": content}
    if not isinstance(content, list):
        raise ApiError(400, "invalid_request", "a user message needs content")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_image(part.get("image_url")))
        else:
            raise ApiError(
                400, "unsupported_content", f"content part {kind!r}: batchgate takes text and image_url parts"
            )
    turn: dict[str, Any] = {"role": "user", "text": "".join(texts)}
    if images:
        turn["attachments"] = images
    return turn


def _image(image: Any) -> dict[str, str]:
    url = image.get("url") if isinstance(image, dict) else None
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise ApiError(
            400,
            "unsupported_content",
            "image_url: batchgate takes images inline, as data URLs (data:image/png;base64,...); it fetches nothing",
        )
    return {"mime_type": match["mime"], "data": match["data"]}


def message_text(content: Any, role: str, *, empty: bool = False) -> str:
    """The text of a message's content (a string or text parts)."""
    if content is None and empty:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return "".join(part["text"] for part in content)
    raise ApiError(
        400, "unsupported_content", f"{role} messages: only text content is supported by batchgate"
    )


def _tool_call(call: Any) -> dict[str, Any]:
    """An assistant message's tool call as a task's ``{"name", "args", "id"}``."""
    function = call.get("function") if isinstance(call, dict) else None
    if (
        not isinstance(function, dict)
        or call.get("type", "function") != "function"
        or not isinstance(call.get("id"), str)
    ):
        raise ApiError(400, "invalid_request", "tool_calls: each needs an id and a function")
    try:
        args = json.loads(function.get("arguments") or "{}")
    except (TypeError, ValueError):
        args = None
    if not isinstance(args, dict):
        raise ApiError(400, "invalid_request", "tool_calls: function.arguments must be a JSON object as text")
    read: dict[str, Any] = {"id": call["id"], "name": function.get("name"), "args": args}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    if signature is not None:  # as Gemini's own OpenAI-compatible endpoint carries it
        read["thought_signature"] = signature
    return read


def _tool_response(content: Any) -> dict[str, Any]:
    """A tool message's content as a function response (an object): its JSON object, or else
    ``{"result": <its text or JSON value>}``."""
    text = message_text(content, "tool")
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def agent_fields(body: dict[str, Any]) -> dict[str, Any]:
    """``tools``, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` as task fields."""
    fields: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise ApiError(400, "invalid_request", "tools: a list is required")
        fields["tools"] = [_function(tool) for tool in tools]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if choice.get("type") != "function" or not isinstance(function, dict):
            raise ApiError(
                400, "invalid_request", "tool_choice: {'type': 'function', 'function': {'name': ...}}"
            )
        fields["tool_choice"] = {"name": function.get("name")}
    elif choice is not None and (tools or choice not in ("auto", "none")):
        fields["tool_choice"] = choice  # "auto" and "none" without tools ask nothing: no-ops
    if body.get("parallel_tool_calls") is not None and tools:
        fields["parallel_tool_calls"] = body["parallel_tool_calls"]
    fields.update(_response_format(body.get("response_format")))
    return fields


def _function(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or tool.get("type") != "function":
        raise ApiError(400, "unsupported_parameter", "tools: batchgate takes tools of type function")
    return {k: function[k] for k in ("name", "description", "parameters") if function.get(k) is not None}


def _response_format(response_format: Any) -> dict[str, Any]:
    if response_format is None:
        return {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":  # OpenAI's JSON mode answers an object, never another JSON value
        return {"response_mime_type": "application/json", "response_schema": {"type": "object"}}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise ApiError(
                400, "invalid_request", "response_format.json_schema.schema: a JSON Schema object is required"
            )
        return {"response_mime_type": "application/json", "response_schema": spec["schema"]}
    raise ApiError(400, "invalid_request", "response_format.type: text, json_object or json_schema")
