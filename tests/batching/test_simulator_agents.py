"""The simulator as agents use it: function calling, declared, answered and streamed.

Driven by the real google-genai SDK where it can say what a test needs, and by raw posts
where it cannot. Every expected value is recomputed from ``answer_for`` and
``value_for_schema``, never copied from a reply.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from google import genai
from google.genai import types

from batching.simulator import SimulatorThread, answer_for
from batching.simulator.answers import value_for_schema
from batching.simulator.signatures import thought_signature_for
from batching.structured import with_answer_format
from batching.tokens import estimate_tokens
from tests.batching.sim_helpers import MODEL, WEATHER_JSON_SCHEMA, post_call, sim_stats
from tests.harness import http_json

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]

NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
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
def api_version() -> str:
    """Agent features are driven through v1beta only."""
    return "v1beta"


def _tools_config(*declarations: types.FunctionDeclaration, **calling: Any) -> types.GenerateContentConfig:
    tool_config = (
        types.ToolConfig(function_calling_config=types.FunctionCallingConfig(**calling)) if calling else None
    )
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=list(declarations))],
        tool_config=tool_config,
        automatic_function_calling=NO_AFC,
    )


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
    stats = sim_stats(sim)
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
    assert sim_stats(sim)["function_calls"] == 0


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
    assert sim_stats(sim)["function_calls"] == 1


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
    stats = sim_stats(sim)
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
    status, reply = post_call(sim, body, "streamGenerateContent")  # without alt=sse: one JSON array
    assert status == 200 and len(reply) == 1
    call = {"name": "f", "args": value_for_schema(WEATHER_JSON_SCHEMA, prompt)}
    assert reply[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": call, "thoughtSignature": thought_signature_for(call)}
    ]
    assert reply[0]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in reply[0]
    stats = sim_stats(sim)
    assert (stats["stream_calls"], stats["function_calls"]) == (2, 2)


def test_other_tools_are_ignored_and_bad_tool_bodies_are_rejected(sim: SimulatorThread) -> None:
    prompt = "search the web"
    text_only = {
        "contents": [{"parts": [{"text": prompt}]}],
        "tools": [{"googleSearch": {}}, {"codeExecution": {}}],
    }
    status, reply = post_call(sim, text_only)
    assert status == 200 and reply["candidates"][0]["content"]["parts"] == [{"text": answer_for(prompt)}]
    for bad in (
        {"tools": {"functionDeclarations": []}},
        {"tools": [{"functionDeclarations": [{"description": "no name"}]}]},
        {"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
        {"contents": [{"parts": [{"functionResponse": {"response": {}}}]}]},
    ):
        status, reply = post_call(sim, {"contents": [{"parts": [{"text": "x"}]}], **bad})
        assert status == 400 and reply["error"]["status"] == "INVALID_ARGUMENT", bad


def test_function_calling_with_json_output_is_refused_and_an_instructed_schema_is_followed(
    sim: SimulatorThread,
) -> None:
    """As Gemini 2.5: no responseMimeType JSON beside functions (400); the schema given in the
    system instruction instead shapes the text answer once the function has answered."""
    tools = [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}]
    user = {"role": "user", "parts": [{"text": "rate it"}]}
    status, reply = post_call(
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
    status, reply = post_call(sim, {"contents": turns, "tools": tools, "systemInstruction": system})
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
