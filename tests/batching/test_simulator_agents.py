"""The simulator as agents use it: function calling, structured output, inline images.

Driven by the real google-genai SDK where it can say what a test needs, and by raw posts
where it cannot (packed calls in the structured dialect). Every expected value is recomputed
from ``answer_for`` and ``value_for_schema``, never copied from a reply.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import pytest
from google import genai
from google.genai import types
from pydantic import BaseModel, Field

from batching.packed_prompt import render_items
from batching.simulator import SimulatorThread, answer_for
from batching.simulator.answers import value_for_schema
from batching.simulator.signatures import thought_signature_for
from batching.structured import with_answer_format
from batching.tokens import estimate_tokens
from tests.harness import http_json

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]

MODEL = "gemini-2.5-flash"
BADJSON = "[[sim:badjson]]"
FORGE = "[[sim:forge]]"
LEAK = "[[sim:leak]]"
POISON = "[[sim:fail]]"
IMAGE_TOKENS = 258
#: A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
WEATHER_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Weather for a city.", parameters_json_schema=WEATHER_JSON_SCHEMA
)
SEARCH = types.FunctionDeclaration(
    name="search",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "query": types.Schema(type=types.Type.STRING),
            "limit": types.Schema(type=types.Type.INTEGER, minimum=3),
            "filters": types.Schema(
                type=types.Type.ARRAY, min_items=2, items=types.Schema(type=types.Type.STRING)
            ),
        },
        required=["query", "limit", "filters"],
    ),
)


@pytest.fixture
def client(sim: SimulatorThread) -> Iterator[genai.Client]:
    sdk = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=sim.url, api_version="v1beta"))
    try:
        yield sdk
    finally:
        sdk.close()


def _stats(sim: SimulatorThread) -> dict[str, Any]:
    return http_json("GET", f"{sim.url}/_sim/stats")[2]


def _post(sim: SimulatorThread, body: dict[str, Any], method: str = "generateContent") -> tuple[int, Any]:
    status, _, reply = http_json("POST", f"{sim.url}/v1beta/models/{MODEL}:{method}", body)
    return status, reply


def _tools_config(*declarations: types.FunctionDeclaration, **calling: Any) -> types.GenerateContentConfig:
    tool_config = (
        types.ToolConfig(function_calling_config=types.FunctionCallingConfig(**calling)) if calling else None
    )
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=list(declarations))],
        tool_config=tool_config,
        automatic_function_calling=NO_AFC,
    )


# --- function calling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declaration", "schema"),
    [
        (WEATHER, WEATHER_JSON_SCHEMA),
        (SEARCH, SEARCH.parameters.model_dump(mode="json", exclude_none=True) if SEARCH.parameters else {}),
    ],
    ids=["json-schema", "openapi"],
)
def test_declared_functions_are_called_with_args_that_carry_the_prompt(
    client: genai.Client, sim: SimulatorThread, declaration: types.FunctionDeclaration, schema: dict[str, Any]
) -> None:
    prompt = "What will the weather be in Lisbon?"
    response = client.models.generate_content(model=MODEL, contents=prompt, config=_tools_config(declaration))
    assert response.function_calls is not None and len(response.function_calls) == 1
    call = response.function_calls[0]
    assert call.name == declaration.name and call.args is not None
    expected_args = value_for_schema(schema, prompt)
    assert call.args == expected_args
    string_args = [v for v in call.args.values() if isinstance(v, str) and prompt in v]
    assert string_args, call.args
    if declaration is WEATHER:
        jsonschema.validate(call.args, WEATHER_JSON_SCHEMA)
        assert call.args == {"city": answer_for(prompt), "days": 7, "unit": "celsius"}
    else:
        assert call.args["limit"] >= 3 and len(call.args["filters"]) == 2
    candidate = (response.candidates or [None])[0]
    assert candidate is not None and candidate.finish_reason == types.FinishReason.STOP
    assert candidate.content is not None and candidate.content.parts is not None
    assert [p.text for p in candidate.content.parts] == [None]
    usage = response.usage_metadata
    call_json = json.dumps({"name": declaration.name, "args": expected_args})
    assert usage is not None and usage.candidates_token_count == estimate_tokens(call_json)
    stats = _stats(sim)
    assert (stats["calls"], stats["function_calls"], stats["plain_calls"]) == (1, 1, 1)


def test_allowed_function_names_pick_the_function(client: genai.Client) -> None:
    config = _tools_config(WEATHER, SEARCH, mode="ANY", allowed_function_names=["search"])
    response = client.models.generate_content(model=MODEL, contents="find papers", config=config)
    assert response.function_calls is not None
    assert [c.name for c in response.function_calls] == ["search"]


def test_mode_none_answers_with_text(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = "just talk to me"
    response = client.models.generate_content(
        model=MODEL, contents=prompt, config=_tools_config(WEATHER, mode="NONE")
    )
    assert response.text == answer_for(prompt) and not response.function_calls
    assert _stats(sim)["function_calls"] == 0


def test_a_function_response_turn_is_answered_with_text_quoting_the_result(
    client: genai.Client, sim: SimulatorThread
) -> None:
    prompt = "Weather in Oslo?"
    first = client.models.generate_content(model=MODEL, contents=prompt, config=_tools_config(WEATHER))
    assert first.candidates and first.candidates[0].content
    model_turn = first.candidates[0].content
    model_turn.parts = [
        types.Part(function_call=part.function_call, thought_signature=b"sig")
        for part in model_turn.parts or []
    ]
    results = [{"temp_c": -3, "sky": "snow <heavy> & cold"}, {"note": "ünïcode"}]
    contents = [
        types.Content(role="user", parts=[types.Part(text=prompt)]),
        model_turn,
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="get_weather", response=r) for r in results],
        ),
    ]
    second = client.models.generate_content(model=MODEL, contents=contents, config=_tools_config(WEATHER))
    quoted = "; ".join(f"get_weather -> {json.dumps(r, ensure_ascii=False, sort_keys=True)}" for r in results)
    assert second.text == f"{answer_for(prompt)} Tool results: {quoted}"
    assert _stats(sim)["function_calls"] == 1


def test_the_sdk_runs_a_python_tool_and_the_answer_quotes_its_result(
    client: genai.Client, sim: SimulatorThread
) -> None:
    seen: list[str] = []

    def get_forecast(city: str) -> str:
        """Forecast for a city."""
        seen.append(city)
        return f"sunny in {len(city)} places"

    prompt = "forecast for Porto"
    config = types.GenerateContentConfig(tools=[get_forecast])
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert seen == [answer_for(prompt)]
    assert response.text is not None and response.text.startswith(answer_for(prompt) + " Tool results: ")
    assert f'get_forecast -> {{"result": "sunny in {len(seen[0])} places"}}' in response.text
    stats = _stats(sim)
    assert (stats["calls"], stats["function_calls"]) == (2, 1)


def test_a_streamed_function_call_is_one_chunk_with_finish_and_usage(
    client: genai.Client, sim: SimulatorThread
) -> None:
    prompt = "stream a call"
    chunks = list(
        client.models.generate_content_stream(model=MODEL, contents=prompt, config=_tools_config(WEATHER))
    )
    assert len(chunks) == 1
    (chunk,) = chunks
    assert chunk.function_calls and chunk.function_calls[0].args == value_for_schema(
        WEATHER_JSON_SCHEMA, prompt
    )
    assert chunk.candidates and chunk.candidates[0].finish_reason == types.FinishReason.STOP
    assert chunk.usage_metadata is not None and chunk.usage_metadata.candidates_token_count
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": WEATHER_JSON_SCHEMA}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY"}},
    }
    status, reply = _post(sim, body, "streamGenerateContent")  # without alt=sse: one JSON array
    assert status == 200 and len(reply) == 1
    call = {"name": "f", "args": value_for_schema(WEATHER_JSON_SCHEMA, prompt)}
    assert reply[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": call, "thoughtSignature": thought_signature_for(call)}
    ]
    assert reply[0]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in reply[0]
    stats = _stats(sim)
    assert (stats["stream_calls"], stats["function_calls"]) == (2, 2)


def test_other_tools_are_ignored_and_bad_tool_bodies_are_rejected(sim: SimulatorThread) -> None:
    prompt = "search the web"
    text_only = {
        "contents": [{"parts": [{"text": prompt}]}],
        "tools": [{"googleSearch": {}}, {"codeExecution": {}}],
    }
    status, reply = _post(sim, text_only)
    assert status == 200 and reply["candidates"][0]["content"]["parts"] == [{"text": answer_for(prompt)}]
    for bad in (
        {"tools": {"functionDeclarations": []}},
        {"tools": [{"functionDeclarations": [{"description": "no name"}]}]},
        {"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        {"contents": [{"parts": [{"functionResponse": {"response": {}}}]}]},
    ):
        status, reply = _post(sim, {"contents": [{"parts": [{"text": "x"}]}], **bad})
        assert status == 400 and reply["error"]["status"] == "INVALID_ARGUMENT", bad


# --- structured output ---------------------------------------------------------------------------


class Address(BaseModel):
    street: str
    city: str
    zip_code: str | None = None


class Person(BaseModel):
    summary: str
    age: int = Field(ge=18, le=30)
    score: float
    mood: Literal["calm", "busy"]
    home: Address
    past: list[Address]
    nickname: str | None = None


def test_a_pydantic_response_schema_is_parsed_by_the_sdk(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = "describe a person"
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Person)
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    person = response.parsed
    assert isinstance(person, Person)
    assert prompt in person.summary and person.summary == answer_for(prompt)
    assert (person.age, person.mood, len(person.past)) == (18, "calm", 1)
    stats = _stats(sim)
    assert (stats["json_calls"], stats["function_calls"]) == (1, 0)


def test_a_json_schema_with_defs_gets_a_value_valid_for_it(client: genai.Client) -> None:
    prompt = "nested please"
    schema = Person.model_json_schema()
    assert "$defs" in schema
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert response.text is not None
    value = json.loads(response.text)
    jsonschema.validate(value, schema)
    assert Person.model_validate(value).summary == answer_for(prompt)
    assert value == value_for_schema(schema, prompt)


def test_value_for_schema_handles_strict_mode_and_gemini_schemas() -> None:
    strict = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 12},
            "kind": {"const": "report"},
            "level": {"type": "integer", "minimum": 2, "maximum": 4},
            "ratio": {"type": "number", "exclusiveMaximum": 1},
            "owner": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Owner"}]},
            "codes": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 3},
            "note": {"type": ["string", "null"]},
            "when": {"type": "string", "format": "date-time"},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
                "minItems": 2,
            },
        },
        "required": ["title", "kind", "level", "ratio", "owner", "codes", "note", "when", "pair"],
        "additionalProperties": False,
        "$defs": {
            "Owner": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "boss": {"anyOf": [{"$ref": "#/$defs/Owner"}, {"type": "null"}]},
                },
                "required": ["name", "boss"],
                "additionalProperties": False,
            }
        },
    }
    prompt = "p"
    value = value_for_schema(strict, prompt)
    jsonschema.validate(value, strict)  # the recursive Owner ends in null
    assert value["title"] == answer_for(prompt)[:12] and value["owner"]["name"] == answer_for(prompt)
    assert value == value_for_schema(strict, prompt)
    gemini = {
        "type": "OBJECT",
        "properties": {
            "b": {"type": "STRING", "nullable": True},
            "a": {"type": "STRING", "format": "enum", "enum": ["x", "y"]},
            "list": {"type": "ARRAY", "minItems": "2", "items": {"type": "INTEGER", "minimum": "5"}},
        },
        "propertyOrdering": ["a", "list", "b"],
    }
    value = value_for_schema(gemini, prompt)
    assert list(value) == ["a", "list", "b"]
    assert value == {"a": "x", "list": [5, 5], "b": answer_for(prompt)}


def test_the_badjson_marker_breaks_a_json_answer(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = f"give me json {BADJSON}"
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema={"type": "object"}
    )
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert response.text is not None
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    plain = client.models.generate_content(model=MODEL, contents=prompt)
    assert plain.text == answer_for(prompt)  # the marker acts on JSON answers only
    shown = http_json("GET", f"{sim.url}/_sim/config")[2]
    assert shown["badjson_marker"] == BADJSON
    assert http_json("POST", f"{sim.url}/_sim/config", {"badjson_marker": ""})[0] == 200
    fixed = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert json.loads(fixed.text or "") == {}


# --- packed calls in the structured dialect ------------------------------------------------------


def _packed_schema(ids: list[str], item_schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "type": "object",
        "properties": {"id": {"type": "string", "enum": ids}, "answer": item_schema},
        "required": ["id", "answer"],
    }
    answers = {"type": "array", "minItems": len(ids), "maxItems": len(ids), "items": entry}
    return {"type": "object", "properties": {"answers": answers}, "required": ["answers"], "$defs": defs}


def _packed_body(prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
    }


def test_a_packed_structured_call_answers_each_item_with_a_valid_value(sim: SimulatorThread) -> None:
    item_schema = Person.model_json_schema()
    defs = item_schema.pop("$defs")
    items = [
        {"id": "a1", "prompt": "first person"},
        {"id": "b2", "prompt": f"broken one {BADJSON}"},
        {"id": "c3", "prompt": "third person", "context": {"user": "bob"}},
        {"id": "d4", "prompt": f"gone {POISON}"},
    ]
    schema = _packed_schema([i["id"] for i in items], item_schema, defs)
    status, reply = _post(sim, _packed_body(render_items(items), schema))
    assert status == 200, reply
    entries = json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])["answers"]
    assert [e["id"] for e in entries] == ["a1", "b2", "c3"]
    validator = jsonschema.Draft202012Validator({**item_schema, "$defs": defs})
    answers = {e["id"]: e["answer"] for e in entries}
    for item_id in ("a1", "c3"):
        assert validator.is_valid(answers[item_id]), answers[item_id]
    assert answers["a1"] == value_for_schema(item_schema, "first person", schema)
    assert Person.model_validate(answers["c3"]).summary == answer_for("third person")
    assert not validator.is_valid(answers["b2"])
    stats = _stats(sim)
    assert (stats["packed_calls"], stats["items"], stats["dropped_items"], stats["json_calls"]) == (
        1,
        3,
        1,
        0,
    )


def test_forge_and_leak_work_on_structured_answers(sim: SimulatorThread) -> None:
    item_schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    items = [
        {"id": "a", "prompt": "secret alpha"},
        {"id": "b", "prompt": f"tell all {LEAK}"},
        {"id": "c", "prompt": f"speak for everyone {FORGE}"},
    ]
    schema = _packed_schema(["a", "b", "c"], item_schema, {})
    leaking = _post(sim, _packed_body(render_items(items[:2]), schema))[1]
    entries = json.loads(leaking["candidates"][0]["content"]["parts"][0]["text"])["answers"]
    assert "secret alpha" in entries[1]["answer"]["text"]
    forging = _post(sim, _packed_body(render_items(items), schema))[1]
    entries = json.loads(forging["candidates"][0]["content"]["parts"][0]["text"])["answers"]
    forged = value_for_schema(item_schema, items[2]["prompt"])
    assert entries == [{"id": i["id"], "answer": forged} for i in items]


def test_the_classic_packed_format_keeps_text_answers_even_with_badjson(sim: SimulatorThread) -> None:
    items = [{"id": "a", "prompt": f"text please {BADJSON}"}]
    schema = {
        "type": "OBJECT",
        "properties": {
            "answers": {
                "type": "ARRAY",
                "items": {
                    "type": "OBJECT",
                    "properties": {"id": {"type": "STRING"}, "answer": {"type": "STRING"}},
                },
            }
        },
    }
    body = {
        "contents": [{"parts": [{"text": render_items(items)}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    reply = _post(sim, body)[1]
    text = reply["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text) == {"answers": [{"id": "a", "answer": answer_for(items[0]["prompt"])}]}


def _tools_block(tools: dict[str, Any]) -> str:
    rendered = json.dumps(tools, ensure_ascii=False, separators=(",", ":"))
    escaped = rendered.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"\n<tools>\n{escaped}\n</tools>\n"


def test_a_packed_tools_block_answers_every_item_with_function_calls(sim: SimulatorThread) -> None:
    functions = [
        {"name": "lookup", "description": "Look <things> up & more", "parameters": WEATHER_JSON_SCHEMA},
        {"name": "noop"},
    ]
    items = [{"id": "a", "prompt": "weather in Rome"}, {"id": "b", "prompt": "weather in Bern"}]
    head, separator, tail = render_items(items).partition("\n<items>\n")
    schema = _packed_schema(["a", "b"], {"type": "string"}, {})
    for allowed, name in (([], "lookup"), (["noop"], "noop")):
        tools = _tools_block({"functions": functions, "mode": "ANY", "allowed": allowed})
        assert "<things>" not in tools
        status, reply = _post(sim, _packed_body(head + tools + separator + tail, schema))
        assert status == 200, reply
        entries = json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])["answers"]
        params = WEATHER_JSON_SCHEMA if name == "lookup" else None
        expected = [
            {
                "id": i["id"],
                "function_calls": [
                    {"name": name, "args": value_for_schema(params, i["prompt"]) if params else {}}
                ],
            }
            for i in items
        ]
        assert entries == expected
    stats = _stats(sim)
    assert (stats["packed_calls"], stats["function_calls"], stats["items"]) == (2, 4, 4)


# --- inline parts --------------------------------------------------------------------------------


def test_an_inline_image_counts_258_prompt_tokens(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = "what is in this picture?"
    contents = [
        types.Content(
            role="user",
            parts=[types.Part.from_bytes(data=PNG, mime_type="image/png"), types.Part(text=prompt)],
        )
    ]
    response = client.models.generate_content(model=MODEL, contents=contents)
    assert response.text == answer_for(prompt)
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == estimate_tokens(prompt) + IMAGE_TOKENS
    tokens = client.models.count_tokens(model=MODEL, contents=contents)
    assert tokens.total_tokens == estimate_tokens(prompt) + IMAGE_TOKENS
    file_part = {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}}
    status, reply = _post(sim, {"contents": [{"parts": [file_part, {"text": prompt}]}]})
    assert status == 200 and reply["usageMetadata"]["promptTokenCount"] == estimate_tokens(prompt)
    stats = _stats(sim)
    assert (stats["inline_parts"], stats["calls"]) == (1, 2)


def test_inline_data_that_is_not_base64_is_rejected(sim: SimulatorThread) -> None:
    for data in ("not base64!!", "YWJ", 7):
        part = {"inline_data": {"mime_type": "image/png", "data": data}}
        status, reply = _post(sim, {"contents": [{"parts": [part, {"text": "hi"}]}]})
        assert status == 400 and reply["error"]["status"] == "INVALID_ARGUMENT", data
    stats = _stats(sim)
    assert (stats["bad_requests"], stats["calls"], stats["inline_parts"]) == (3, 0, 0)


def test_function_calling_with_json_output_is_refused_and_an_instructed_schema_is_followed(
    sim: SimulatorThread,
) -> None:
    """As Gemini 2.5: no responseMimeType JSON beside functions (400); the schema given in the
    system instruction instead shapes the text answer once the function has answered."""
    tools = [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}]
    user = {"role": "user", "parts": [{"text": "rate it"}]}
    status, reply = _post(
        sim,
        {"contents": [user], "tools": tools, "generationConfig": {"responseMimeType": "application/json"}},
    )
    assert status == 400 and "unsupported" in reply["error"]["message"], reply
    schema = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}
    turns = [
        user,
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"r": "ok-7"}}}]},
    ]
    system = {"parts": [{"text": with_answer_format("Be brief.", schema)}]}
    status, reply = _post(sim, {"contents": turns, "tools": tools, "systemInstruction": system})
    assert status == 200, reply
    answer = json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])
    jsonschema.validate(answer, schema)
    assert "ok-7" in answer["note"] and "rate it" in answer["note"]


def test_gemini_3_refuses_a_function_call_given_back_without_its_signature(sim: SimulatorThread) -> None:
    call = {"name": "f", "args": {}}
    turns = [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": call}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}]},
    ]

    def post(model: str, signature: str | None) -> int:
        if signature is not None:
            turns[1]["parts"][0]["thoughtSignature"] = signature
        return http_json("POST", f"{sim.url}/v1beta/models/{model}:generateContent", {"contents": turns})[0]

    assert post("gemini-2.5-flash", None) == 200  # 2.5 does not ask for signatures
    assert post("gemini-3-pro-preview", None) == 400
    assert post("gemini-3-pro-preview", thought_signature_for(call)) == 200
