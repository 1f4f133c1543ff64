"""Gemini's REST wire format: reading a generateContent request (``replies`` writes the answers).

Requests are accepted with camelCase or snake_case keys, as Google's own endpoint does (the SDK
mixes them: ``inlineData`` holding ``mime_type``, ``parameters_json_schema``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from batching.simulator.signatures import SIGNING_MODELS
from batching.structured import answer_format
from batching.tokens import estimate_tokens

#: ``promptTokenCount`` of one inline part (``inlineData``): Gemini's count for a small image.
INLINE_PART_TOKENS = 258
#: ``functionCallingConfig.mode`` values; the simulator calls a function in every mode but NONE.
FUNCTION_MODES = frozenset({"AUTO", "ANY", "NONE", "VALIDATED"})

_URLSAFE = str.maketrans("-_", "+/")


class BadRequest(ValueError):
    """A request body Gemini would reject with 400 INVALID_ARGUMENT."""


@dataclass(frozen=True)
class FunctionDeclaration:
    """A function the caller offers the model."""

    name: str
    description: str | None = None
    #: ``parameters`` (Gemini's OpenAPI subset) or else ``parametersJsonSchema``; None: no arguments.
    parameters: Any = None


@dataclass(frozen=True)
class FunctionResponse:
    """A function's result that the caller sent back (a ``functionResponse`` part)."""

    name: str
    response: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerateRequest:
    """What the simulator needs from a generateContent body."""

    #: The last non-empty text part of the user turns: the prompt that is answered (a turn
    #: holding only function responses has none).
    prompt: str
    #: Every text of the system instruction and all turns, for input-token accounting.
    texts: tuple[str, ...]
    response_mime_type: str | None = None
    #: ``responseSchema`` (Gemini's OpenAPI subset) or else ``responseJsonSchema``.
    response_schema: Any = None
    #: ``maxOutputTokens``: a longer answer is cut there, with finish reason ``MAX_TOKENS``.
    max_output_tokens: int | None = None
    #: Declared functions of every ``tools`` entry, in order (other tools are ignored).
    functions: tuple[FunctionDeclaration, ...] = ()
    #: ``toolConfig.functionCallingConfig``: the mode (AUTO when unset) and allowed names.
    function_mode: str = "AUTO"
    allowed_functions: tuple[str, ...] = ()
    #: ``functionResponse`` parts of the conversation, in order.
    function_responses: tuple[FunctionResponse, ...] = ()
    #: ``inlineData`` parts of the conversation (images and such), each ``INLINE_PART_TOKENS``.
    inline_parts: int = 0
    #: True when a turn of the history holds a ``functionCall`` part.
    history_calls: bool = False
    #: ``functionCall`` parts of the history without a ``thoughtSignature``.
    unsigned_calls: int = 0
    #: The JSON Schema a system instruction asks text answers to follow
    #: (``batching.structured.with_answer_format``: functions and a schema in one call).
    answer_format: dict[str, Any] | None = None

    @property
    def json_mode(self) -> bool:
        """True when the caller asked for JSON output."""
        return (self.response_mime_type or "").lower() == "application/json"

    @property
    def prompt_tokens(self) -> int:
        """Estimated input tokens of the whole request."""
        return sum(estimate_tokens(text) for text in self.texts) + self.inline_parts * INLINE_PART_TOKENS

    @property
    def function_to_call(self) -> FunctionDeclaration | None:
        """The function this call is answered with a call of: functions are declared, the mode
        is not NONE and no function result came back yet; else None (a text answer)."""
        if self.function_mode == "NONE" or self.function_responses:
            return None
        return choose_function(self.functions, self.allowed_functions)


def choose_function(
    functions: tuple[FunctionDeclaration, ...], allowed: tuple[str, ...]
) -> FunctionDeclaration | None:
    """The function the simulator calls: the first allowed name, else the first declared one."""
    if not functions:
        return None
    if not allowed:
        return functions[0]
    return next((f for f in functions if f.name == allowed[0]), FunctionDeclaration(allowed[0]))


def parse_generate_request(body: Any) -> GenerateRequest:
    """Read a decoded JSON body, raising ``BadRequest`` where Gemini would answer 400."""
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload: the request body must be a JSON object.")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    conversation = _Conversation()
    system = _get(body, "systemInstruction", "system_instruction")
    if isinstance(system, str):
        conversation.texts.append(system)
    elif system is not None:
        conversation.read(system, "systemInstruction", user=False)
    system_texts = len(conversation.texts)
    for index, content in enumerate(contents):
        conversation.read(content, f"contents[{index}]", user=True)
    if conversation.prompt is None:
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
    mode, allowed = _function_calling_config(body)
    functions = _function_declarations(body)
    if functions and mode != "NONE" and (mime or "").lower() == "application/json":
        raise BadRequest("Function calling with a response mime type: 'application/json' is unsupported")
    return GenerateRequest(
        prompt=conversation.prompt,
        texts=tuple(conversation.texts),
        response_mime_type=mime,
        response_schema=schema,
        max_output_tokens=limit,
        functions=functions,
        function_mode=mode,
        allowed_functions=allowed,
        function_responses=tuple(conversation.responses),
        inline_parts=conversation.inline_parts,
        history_calls=conversation.calls,
        unsigned_calls=conversation.unsigned_calls,
        answer_format=answer_format("\n".join(conversation.texts[:system_texts])),
    )


def check_thought_signatures(model: str, request: GenerateRequest) -> None:
    """As Gemini 3 does: a function call sent back in the history must carry the signature the
    model gave it (``BadRequest`` otherwise); Gemini 2.5 does not ask for them."""
    if model.startswith(SIGNING_MODELS) and request.unsigned_calls:
        raise BadRequest(
            "Function call is missing a thought_signature in functionCall parts. This is required for "
            "tools to work correctly (simulated Gemini 3)."
        )


def _get(data: dict[str, Any], camel: str, snake: str) -> Any:
    return data[camel] if data.get(camel) is not None else data.get(snake)


class _Conversation:
    """What the contents of a request say, read one content at a time."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        #: None until a user content is read; then its last non-empty text so far.
        self.prompt: str | None = None
        self.responses: list[FunctionResponse] = []
        self.inline_parts = 0
        self.calls = False
        #: ``functionCall`` parts sent back without a ``thoughtSignature``.
        self.unsigned_calls = 0

    def read(self, content: Any, where: str, *, user: bool) -> None:
        """Read one content (``user``: of ``contents``, not the system instruction)."""
        if not isinstance(content, dict):
            raise BadRequest(f"Invalid JSON payload: {where} must be a Content object.")
        parts = content.get("parts", [])
        if not isinstance(parts, list):
            raise BadRequest(f"Invalid JSON payload: {where}.parts must be a list.")
        from_user = user and content.get("role") in (None, "", "user")
        if from_user and self.prompt is None:
            self.prompt = ""
        for index, part in enumerate(parts):
            if not isinstance(part, dict):
                raise BadRequest(f"Invalid JSON payload: {where}.parts[{index}] must be a Part object.")
            self._read_part(part, f"{where}.parts[{index}]", from_user)

    def _read_part(self, part: dict[str, Any], where: str, from_user: bool) -> None:
        text = part.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise BadRequest(f"Invalid value at '{where}.text': must be a string.")
            if not part.get("thought"):
                self.texts.append(text)
                if from_user and text:
                    self.prompt = text
        inline = _get(part, "inlineData", "inline_data")
        if inline is not None:
            data = inline.get("data") if isinstance(inline, dict) else None
            if not isinstance(data, str) or not _is_base64(data):
                raise BadRequest(
                    f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed."
                )
            self.inline_parts += 1
        if _get(part, "functionCall", "function_call") is not None:
            self.calls = True
            if not _get(part, "thoughtSignature", "thought_signature"):
                self.unsigned_calls += 1
        result = _get(part, "functionResponse", "function_response")
        if result is not None:
            self.responses.append(_function_response(result, f"{where}.function_response"))


def _function_response(result: Any, where: str) -> FunctionResponse:
    name = result.get("name") if isinstance(result, dict) else None
    if not isinstance(name, str) or not name:
        raise BadRequest(f"* GenerateContentRequest.{where}.name: Name cannot be empty.")
    response = result.get("response")
    if response is None:
        response = {}
    if not isinstance(response, dict):
        raise BadRequest(f"Invalid value at '{where}.response': must be an object.")
    return FunctionResponse(name, response)


def _function_declarations(body: dict[str, Any]) -> tuple[FunctionDeclaration, ...]:
    """The declared functions of every tool; other tools (googleSearch...) are ignored."""
    tools = body.get("tools")
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise BadRequest("Invalid JSON payload: tools must be a list.")
    functions: list[FunctionDeclaration] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise BadRequest(f"Invalid JSON payload: tools[{index}] must be a Tool object.")
        declarations = _get(tool, "functionDeclarations", "function_declarations")
        if declarations is None:
            continue
        if not isinstance(declarations, list):
            raise BadRequest(f"Invalid JSON payload: tools[{index}].function_declarations must be a list.")
        for number, declaration in enumerate(declarations):
            where = f"tools[{index}].function_declarations[{number}]"
            functions.append(_function_declaration(declaration, where))
    return tuple(functions)


def _function_declaration(declaration: Any, where: str) -> FunctionDeclaration:
    if not isinstance(declaration, dict):
        raise BadRequest(f"Invalid JSON payload: {where} must be a FunctionDeclaration object.")
    name = declaration.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"* GenerateContentRequest.{where}.name: Name cannot be empty.")
    parameters = declaration.get("parameters")
    if parameters is None:
        parameters = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
    description = declaration.get("description")
    return FunctionDeclaration(name, description if isinstance(description, str) else None, parameters)


def _function_calling_config(body: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The function-calling mode (AUTO when unset) and allowed function names."""
    tool_config = _get(body, "toolConfig", "tool_config") or {}
    if not isinstance(tool_config, dict):
        raise BadRequest("Invalid JSON payload: tool_config must be an object.")
    calling = _get(tool_config, "functionCallingConfig", "function_calling_config")
    if calling is None:
        return "AUTO", ()
    if not isinstance(calling, dict):
        raise BadRequest("Invalid JSON payload: tool_config.function_calling_config must be an object.")
    mode = calling.get("mode") or "AUTO"
    mode = mode.upper() if isinstance(mode, str) else mode
    if mode == "MODE_UNSPECIFIED":
        mode = "AUTO"
    if mode not in FUNCTION_MODES:
        raise BadRequest(f"Invalid value at 'tool_config.function_calling_config.mode': {json.dumps(mode)}")
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names") or []
    if not isinstance(allowed, list) or not all(isinstance(name, str) for name in allowed):
        raise BadRequest("Invalid value at 'tool_config.function_calling_config.allowed_function_names'.")
    return mode, tuple(allowed)


def _is_base64(data: str) -> bool:
    """True when ``data`` decodes as base64 (standard or URL-safe alphabet, as Gemini takes)."""
    try:
        base64.b64decode(data.translate(_URLSAFE).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return True
