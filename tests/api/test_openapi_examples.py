"""What the document shows or accepts, the parsers take: its examples of every request body,
and agents' requests to the drop-in endpoints, whose schemas name the fields their parsers read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.gemini_view import to_task as gemini_task
from api.openai_view import to_task as openai_task
from api.preferences import Preferences
from tests.api.openapi_helpers import accepted_by_model, validator


def test_the_documented_examples_are_valid_and_accepted(spec: dict[str, Any]) -> None:
    bodies = spec["components"]["requestBodies"]
    for example in bodies["TaskRequest"]["content"]["application/json"]["examples"].values():
        assert validator(spec, "TaskRequest").is_valid(example["value"])
        assert accepted_by_model(example["value"])
    for example in bodies["GenerateContentRequest"]["content"]["application/json"]["examples"].values():
        assert validator(spec, "GenerateContentRequest").is_valid(example["value"])
        gemini_task(example["value"], "gemini-2.5-flash", 200_000, 100_000)
    openai = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    for example in openai["examples"].values():
        assert validator(spec, "ChatCompletionRequest").is_valid(example["value"])
        openai_task(example["value"], 200_000, 100_000)
    preferences = spec["paths"]["/api/v1/users/{user_id}/preferences"]["put"]["requestBody"]["content"]
    assert validator(spec, "Preferences").is_valid(preferences["application/json"]["example"])
    Preferences.model_validate(preferences["application/json"]["example"])


def test_the_drop_in_schemas_name_the_fields_their_parsers_take(spec: dict[str, Any]) -> None:
    from api.gemini_view import GENERATION_FIELDS as GEMINI_GENERATION
    from api.gemini_view import OUTPUT_FIELDS, REQUEST_FIELDS
    from api.openai_view import AGENT_FIELDS, IGNORED_FIELDS
    from api.openai_view import GENERATION_FIELDS as OPENAI_GENERATION

    schemas = spec["components"]["schemas"]
    gemini = schemas["GenerateContentRequest"]["properties"]
    assert set(gemini) == REQUEST_FIELDS
    assert set(gemini["generationConfig"]["properties"]) == set(GEMINI_GENERATION) | OUTPUT_FIELDS
    assert set(schemas["GeminiPart"]["properties"]) == {
        "text",
        "inlineData",
        "functionCall",
        "functionResponse",
        "thought",
        "thoughtSignature",
    }
    openai = schemas["ChatCompletionRequest"]["properties"]
    assert set(openai) == {
        "model",
        "messages",
        "stream",
        "n",
        *OPENAI_GENERATION,
        *IGNORED_FIELDS,
        *AGENT_FIELDS,
    }


#: Drop-in requests of agents, valid for the document: their parsers take them (the document
#: may be stricter than a parser, never looser).
GEMINI_AGENT_REQUESTS: list[dict[str, Any]] = [
    {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Lisbon?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "", "thought": True, "thoughtSignature": "c2ln"},
                    {"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Lisbon"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"c": 21}}}
                ],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    },
    {
        "contents": [
            {"parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}
        ],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
        },
    },
    {
        "contents": [{"role": "user", "parts": [{"text": "Colours?"}]}],
        "generationConfig": {"responseMimeType": "text/plain", "temperature": 0},
        "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
    },
]
OPENAI_AGENT_REQUESTS: list[dict[str, Any]] = [
    {
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be terse."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                    },
                ],
            },
        ],
        "response_format": {"type": "json_object"},
    },
    {
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "user", "content": "Weather in Lisbon and Porto?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "a",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Lisbon"}'},
                    },
                    {
                        "id": "b",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Porto"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": '{"c": 21}'},
            {"role": "tool", "tool_call_id": "b", "content": "sunny"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": True}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "w"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "text"},
    },
]


@pytest.mark.parametrize("body", GEMINI_AGENT_REQUESTS, ids=lambda body: json.dumps(body)[:70])
def test_gemini_agent_requests_the_document_accepts_are_taken(spec: dict[str, Any], body: Any) -> None:
    assert validator(spec, "GenerateContentRequest").is_valid(body)
    gemini_task(body, "gemini-2.5-flash", 200_000, 100_000)


@pytest.mark.parametrize("body", OPENAI_AGENT_REQUESTS, ids=lambda body: json.dumps(body)[:70])
def test_openai_agent_requests_the_document_accepts_are_taken(spec: dict[str, Any], body: Any) -> None:
    assert validator(spec, "ChatCompletionRequest").is_valid(body)
    openai_task(body, 200_000, 100_000)
