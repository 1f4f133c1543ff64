"""The document's request schemas accept what the pydantic models accept and refuse what they
refuse, but for the few rules only words can state (``LOOSER_THAN_MODEL``): each such rule is in
the schema's description."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from api.generation import Generation
from api.preferences import Preferences
from api.schemas import (
    Attachment,
    FunctionTool,
    TaskRequest,
    ToolCall,
    ToolChoiceFunction,
    ToolResult,
    Turn,
)
from tests.api.openapi_helpers import accepted_by_model, refusal_by_model, validator


@pytest.mark.parametrize(
    ("schema", "model"),
    [
        ("TaskRequest", TaskRequest),
        ("Generation", Generation),
        ("Preferences", Preferences),
        ("Turn", Turn),
        ("Attachment", Attachment),
        ("FunctionTool", FunctionTool),
        ("ToolChoiceFunction", ToolChoiceFunction),
        ("ToolCall", ToolCall),
        ("ToolResult", ToolResult),
    ],
)
def test_request_schemas_have_the_models_fields_and_forbid_others(
    spec: dict[str, Any], schema: str, model: type[BaseModel]
) -> None:
    documented = spec["components"]["schemas"][schema]
    assert set(documented["properties"]) == set(model.model_fields)
    assert set(documented.get("required", [])) == {
        n for n, f in model.model_fields.items() if f.is_required()
    }
    assert documented["additionalProperties"] is False
    assert model.model_config.get("extra") == "forbid"


#: The one rule between turns the document states only in words: each model turn's
#: ``tool_calls`` are answered by the next turn's ``tool_results``, one per call.
TOOL_TURNS_REFUSAL = "must be answered by this turn's tool_results"
TOOL_TURNS_PHRASE = "one result per call"


#: Values at and beyond each generation bound, and of the wrong type.
GENERATION_PROBES: dict[str, list[Any]] = {
    "temperature": [0, 2, 2.0001, -0.0001, 1.5, "1", True, None],
    "top_p": [0, 0.0001, 1, 1.0001, None],
    "top_k": [0, 1, 1000, 1001, 1.5, "5", None],
    "max_output_tokens": [0, 1, 65536, 65537, True, None],
    "stop_sequences": [[], ["a"] * 5, ["a"] * 6, "a", [1], None],
    "seed": [0, -(2**31), 2**31 - 1, 2**31, -(2**31) - 1, 1.5, None],
    "presence_penalty": [-2, 2, -2.1, 2.1, None],
    "frequency_penalty": [-2, 2, -2.1, 2.1, "0", None],
}
#: An agent's request: a function, a call of it, its result, an inline image.
TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = {"id": "call_1", "name": "get_weather", "args": {"city": "Lisbon"}}
RESULT = {"id": "call_1", "name": "get_weather", "response": {"temperature_c": 21}}
IMAGE = {"mime_type": "image/png", "data": "iVBORw0KGgo="}
#: Attachment fields: padded base64 of either alphabet and what is not; the MIME types Gemini
#: reads inline, and others.
ATTACHMENT_PROBES: dict[str, list[Any]] = {
    "data": ["AAAA", "AAA=", "AA==", "ab-_", "a+/b", "AAAAAAAA", "AAAAAA==", "", "A===", "AAA", "AAAAA",
             "AA=A", "=AAA", "AAA==", "not base64!", "AA AA", "AAAA====", None, 1234],
    "mime_type": ["image/jpeg", "image/svg+xml", "audio/wav", "video/mp4", "application/pdf", "text/plain",
                  "application/x-sh", "text/html", "image/", "IMAGE/PNG", "image/png; q=1",
                  "image/" + "p" * 64, "image/" + "p" * 65, "image", None],
}  # fmt: skip
PROBES: list[Any] = [
    {"prompt": "x"},
    {"prompt": "x", "system": None, "context": None, "model": None, "generation": None, "strategy": None},
    {"prompt": "x", "cache": None, "stream": None, "session_id": None, "user_id": None},
    {"prompt": "x", "system": "s", "context": {"a": [1, {"b": None}]}, "model": "gemini-2.5-flash"},
    {
        "prompt": "x",
        "strategy": "pack",
        "cache": False,
        "stream": True,
        "session_id": "a.b:c-d_e",
        "user_id": "u1",
    },
    {"prompt": "x" * 200_000},
    {"prompt": "x" * 200_001},
    {"prompt": " x "},
    {},
    {"prompt": ""},
    {"prompt": "   "},
    {"prompt": "\t\n"},
    {"prompt": 1},
    {"prompt": None},
    {"prompt": "x", "extra": 1},
    {"prompt": "x", "system": "s" * 100_000},
    {"prompt": "x", "system": "s" * 100_001},
    {"prompt": "x", "system": 1},
    {"prompt": "x", "context": []},
    {"prompt": "x", "context": "c"},
    {"prompt": "x", "model": "m" * 100},
    {"prompt": "x", "model": "m" * 101},
    {"prompt": "x", "model": "-m"},
    {"prompt": "x", "model": "a/b"},
    {"prompt": "x", "model": "a b"},
    {"prompt": "x", "model": 5},
    {"prompt": "x", "strategy": "fast"},
    {"prompt": "x", "cache": "false"},
    {"prompt": "x", "cache": 0},
    {"prompt": "x", "stream": 1},
    {"prompt": "x", "session_id": ""},
    {"prompt": "x", "session_id": "s" * 128},
    {"prompt": "x", "session_id": "s" * 129},
    {"prompt": "x", "session_id": ".s"},
    {"prompt": "x", "session_id": "s/t"},
    {"prompt": "x", "user_id": "ü"},
    {"prompt": "x", "user_id": 7},
    {"prompt": "x", "history": [{"role": "user", "text": "Hi"}, {"role": "model", "text": "Hello"}]},
    {"prompt": "x", "history": []},
    {"prompt": "x", "history": [{"role": "user", "text": ""}] * 1000},
    {"prompt": "x", "history": [{"role": "user", "text": ""}] * 1001},
    {"prompt": "x", "history": [{"role": "assistant", "text": "Hello"}]},
    {"prompt": "x", "history": [{"role": "user"}]},
    {"prompt": "x", "history": [{"role": "user", "text": "Hi", "at": 1}]},
    {"prompt": "x", "history": {"role": "user", "text": "Hi"}},
    {"prompt": "x", "generation": {}},
    {"prompt": "x", "generation": "g"},
    {"prompt": "x", "generation": {"other": 1}},
    *(
        {"prompt": "x", "generation": {name: value}}
        for name, values in GENERATION_PROBES.items()
        for value in values
    ),
    # A blank prompt is fine only beside tool results (not beside attachments or tools alone).
    {"tool_results": [RESULT]},
    {"prompt": "", "tool_results": [RESULT]},
    {"prompt": " \n", "tool_results": [RESULT]},
    {"prompt": "x", "tool_results": []},
    {"prompt": "", "tool_results": []},
    {"prompt": "", "tool_results": None},
    {"prompt": "", "attachments": [IMAGE]},
    {"attachments": [IMAGE]},
    {"tools": [TOOL]},
    {"prompt": "x" * 200_001, "tool_results": [RESULT]},
    {"prompt": None, "tool_results": [RESULT]},
    # attachments
    {"prompt": "x", "attachments": [IMAGE]},
    {"prompt": "x", "attachments": []},
    {"prompt": "x", "attachments": None},
    {"prompt": "x", "attachments": [IMAGE] * 16},
    {"prompt": "x", "attachments": [IMAGE] * 17},
    {"prompt": "x", "attachments": IMAGE},
    {"prompt": "x", "attachments": [{"mime_type": "image/png"}]},
    {"prompt": "x", "attachments": [{"data": "AAAA"}]},
    {"prompt": "x", "attachments": [{**IMAGE, "name": "a.png"}]},
    *(
        {"prompt": "x", "attachments": [{**IMAGE, name: value}]}
        for name, values in ATTACHMENT_PROBES.items()
        for value in values
    ),
    # tools
    {"prompt": "x", "tools": [TOOL]},
    {"prompt": "x", "tools": []},
    {"prompt": "x", "tools": None},
    {"prompt": "x", "tools": TOOL},
    {"prompt": "x", "tools": [{"name": "f"}]},
    {"prompt": "x", "tools": [{"name": f"f{n}"} for n in range(128)]},
    {"prompt": "x", "tools": [{"name": f"f{n}"} for n in range(129)]},
    {"prompt": "x", "tools": [{"description": "no name"}]},
    {"prompt": "x", "tools": [{**TOOL, "strict": True}]},
    *(
        {"prompt": "x", "tools": [{"name": name}]}
        for name in ["_f", "f.g:h-i_2", "f" * 128, "f" * 129, "1f", "f g", "", "é", 1]
    ),
    {"prompt": "x", "tools": [{"name": "f", "description": None, "parameters": None}]},
    {"prompt": "x", "tools": [{"name": "f", "description": "d" * 10_000}]},
    {"prompt": "x", "tools": [{"name": "f", "description": "d" * 10_001}]},
    {"prompt": "x", "tools": [{"name": "f", "parameters": {}}]},
    {"prompt": "x", "tools": [{"name": "f", "parameters": []}]},
    {"prompt": "x", "tools": [{"name": "f", "parameters": "object"}]},
    # tool_choice: needs tools
    *(
        {"prompt": "x", "tools": [TOOL], "tool_choice": choice}
        for choice in ["auto", "none", "required", None]
    ),
    {"prompt": "x", "tools": [TOOL], "tool_choice": {"name": "get_weather"}},
    {"prompt": "x", "tools": [TOOL], "tool_choice": "any"},
    {"prompt": "x", "tools": [TOOL], "tool_choice": "AUTO"},
    {"prompt": "x", "tools": [TOOL], "tool_choice": 1},
    {"prompt": "x", "tools": [TOOL], "tool_choice": {}},
    {"prompt": "x", "tools": [TOOL], "tool_choice": {"name": "1f"}},
    {"prompt": "x", "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"}},
    {"prompt": "x", "tool_choice": "auto"},
    {"prompt": "x", "tool_choice": "none"},
    {"prompt": "x", "tools": [], "tool_choice": "required"},
    {"prompt": "x", "tools": None, "tool_choice": "auto"},
    {"prompt": "x", "tool_choice": {"name": "get_weather"}},
    {"prompt": "x", "tool_choice": None},
    # parallel_tool_calls
    *(
        {"prompt": "x", "tools": [TOOL], "parallel_tool_calls": value}
        for value in [True, False, None, "false", 0]
    ),
    # tool_results
    {"prompt": "x", "tool_results": [RESULT]},
    {"prompt": "x", "tool_results": [{"name": "get_weather", "response": {}}]},
    {"prompt": "x", "tool_results": [{**RESULT, "id": None}]},
    {"prompt": "x", "tool_results": [{**RESULT, "id": "i" * 256}]},
    {"prompt": "x", "tool_results": [{**RESULT, "id": "i" * 257}]},
    {"prompt": "x", "tool_results": [{**RESULT, "id": 1}]},
    {"tool_results": [{"id": "call_1", "response": {"temperature_c": 21}}]},
    {"tool_results": [{"name": "get_weather"}]},
    {"tool_results": [{"name": "1f", "response": {}}]},
    *({"tool_results": [{"name": "f", "response": response}]} for response in [[], "ok", None, 1]),
    {"tool_results": [{**RESULT, "extra": 1}]},
    {"tool_results": [RESULT] * 128},
    {"tool_results": [RESULT] * 129},
    {"tool_results": RESULT},
    # structured output
    {"prompt": "x", "response_schema": {"type": "object"}},
    {"prompt": "x", "response_schema": {}},
    {"prompt": "x", "response_schema": None},
    {"prompt": "x", "response_schema": []},
    {"prompt": "x", "response_schema": "object"},
    *(
        {"prompt": "x", "response_mime_type": mime}
        for mime in ["application/json", "text/plain", None, "text/x.enum", "APPLICATION/JSON", "json"]
    ),
    {"prompt": "x", "response_schema": {"type": "object"}, "response_mime_type": "application/json"},
    {"prompt": "x", "response_schema": {"type": "object"}, "response_mime_type": "text/plain"},
    {"prompt": "x", "response_schema": {}, "response_mime_type": "text/plain"},
    {"prompt": "x", "response_schema": None, "response_mime_type": "text/plain"},
    {"prompt": "x", "response_schema": {"type": "object"}, "response_mime_type": None},
    # turns: tool calls only on a model turn, tool results and attachments only on a user turn
    {"prompt": "x", "history": [{"role": "model"}]},
    {"prompt": "x", "history": [{"role": "user", "text": None}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [CALL]}]},
    {"prompt": "x", "history": [{"role": "model", "text": "Let me look", "tool_calls": [CALL] * 128}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [CALL] * 129}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [{"name": "get_weather"}]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [{"args": {}}]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [{"name": "f", "args": None}]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [{"name": "f", "args": []}]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [{**CALL, "id": "i" * 257}]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": [{**CALL, "type": "function"}]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_calls": CALL}]},
    {"prompt": "x", "history": [{"role": "user", "tool_calls": [CALL]}]},
    {"prompt": "x", "history": [{"role": "user", "tool_calls": []}]},
    {"prompt": "x", "history": [{"role": "user", "tool_calls": None}]},
    {"prompt": "x", "history": [{"role": "user", "tool_results": [RESULT], "attachments": [IMAGE]}]},
    {"prompt": "x", "history": [{"role": "user", "attachments": [IMAGE] * 17}]},
    {
        "prompt": "x",
        "history": [{"role": "user", "attachments": [{"mime_type": "text/html", "data": "AAAA"}]}],
    },
    {"prompt": "x", "history": [{"role": "user", "tool_results": [RESULT] * 129}]},
    {"prompt": "x", "history": [{"role": "model", "tool_results": [RESULT]}]},
    {"prompt": "x", "history": [{"role": "model", "attachments": [IMAGE]}]},
    {"prompt": "x", "history": [{"role": "model", "tool_results": [], "attachments": None}]},
    {
        "history": [
            {"role": "user", "text": "What is the weather in Lisbon?"},
            {"role": "model", "tool_calls": [CALL]},
        ],
        "tool_results": [RESULT],
        "tools": [TOOL],
        "tool_choice": "none",
        "parallel_tool_calls": False,
    },
]

#: What the document accepts and the model refuses, for rules the document can only state in
#: words (each phrase is in its description): a request of each is 422 all the same.
LOOSER_THAN_MODEL: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "x", "tools": [{"name": "f"}, {"name": "f"}]}, "the names of `tools` are unique"),
    ({"prompt": "x", "tools": [TOOL], "tool_choice": {"name": "f"}}, "names one of `tools`"),
    ({"prompt": "x", "tools": [{"name": "f", "parameters": {"type": "nope"}}]}, "valid JSON"),
    ({"prompt": "x", "response_schema": {"minLength": -1}}, "valid JSON"),
    ({"prompt": "x", "response_schema": {"required": "a"}}, "valid JSON"),
]


@pytest.mark.parametrize("body", PROBES, ids=lambda body: json.dumps(body)[:70])
def test_the_task_schema_accepts_exactly_what_the_model_accepts(spec: dict[str, Any], body: Any) -> None:
    documented, refusal = validator(spec, "TaskRequest").is_valid(body), refusal_by_model(body)
    if documented and refusal is not None and TOOL_TURNS_REFUSAL in refusal:
        # Counting the turns' calls and results is beyond JSON Schema: the description says it.
        description = spec["components"]["schemas"]["TaskRequest"]["description"].replace("\n", " ")
        assert TOOL_TURNS_PHRASE in description
        return
    assert documented == (refusal is None), refusal


@pytest.mark.parametrize(("body", "phrase"), LOOSER_THAN_MODEL, ids=lambda value: json.dumps(value)[:70])
def test_the_task_schema_is_looser_than_the_model_only_where_its_description_says(
    spec: dict[str, Any], body: dict[str, Any], phrase: str
) -> None:
    assert validator(spec, "TaskRequest").is_valid(body)
    assert not accepted_by_model(body)
    assert phrase in spec["components"]["schemas"]["TaskRequest"]["description"].replace("\n", " ")


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"model": "gemini-2.5-pro", "system": "s", "language": "French", "generation": {"temperature": 0.3}},
        {"language": "Simplified Chinese"},
        {"language": "pt-BR"},
        {"language": "x" * 65},
        {"language": " French"},
        {"language": 5},
        {"generation": {"top_k": 0}},
        {"colour": "red"},
    ],
)
def test_the_preferences_schema_accepts_exactly_what_the_model_accepts(
    spec: dict[str, Any], document: dict[str, Any]
) -> None:
    try:
        Preferences.model_validate(document)
        accepted = True
    except ValueError:
        accepted = False
    assert validator(spec, "Preferences").is_valid(document) == accepted
