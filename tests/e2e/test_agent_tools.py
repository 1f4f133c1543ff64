"""Agents' function calling through nginx with the real SDKs: the openai tool loop and
tool_choice, Gemini's REST shapes, litellm, the native API's and a session's tool round trips,
tools with a schema, and Gemini 3's thought signatures."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import jsonschema
import openai
import pytest

from batching.simulator.answers import answer_for
from tests.conftest import RunningCluster
from tests.e2e.agent_helpers import MODEL, Verdict, openai_client, sim_requests
from tests.harness import http_json

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_fifty_tool_calling_conversations_through_nginx(cluster: RunningCluster) -> None:
    """The openai SDK's tool loop: call -> tool result -> final answer, 50 at once; the first
    turns share model calls, so the 100 turns take fewer than 100 calls."""
    cluster.sim_reset()

    async def conversation(client: openai.AsyncOpenAI, n: int) -> tuple[Any, Any]:
        messages: list[Any] = [{"role": "user", "content": f"weather in town {n}?"}]
        first = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
        call = first.choices[0].message.tool_calls[0]
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        result = json.dumps({"forecast": f"sunny-{n}", "args": json.loads(call.function.arguments)})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        second = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
        return first, second

    async def all_of_them() -> list[tuple[Any, Any]]:
        async with openai_client(cluster) as client:
            return await asyncio.gather(*(conversation(client, n) for n in range(50)))

    for n, (first, second) in enumerate(asyncio.run(all_of_them())):
        (choice,) = first.choices
        assert choice.finish_reason == "tool_calls" and not choice.message.content
        (call,) = choice.message.tool_calls
        args = json.loads(call.function.arguments)
        assert call.function.name == "get_weather" and f"weather in town {n}?" in args["city"], call
        assert isinstance(args["days"], int) and args["days"] >= 1
        assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
        assert f"sunny-{n}" in second.choices[0].message.content
        assert second.usage.total_tokens > 0
    stats = cluster.sim_stats()
    assert stats["calls"] < 100, stats
    assert stats["function_calls"] >= 1, stats


def test_tool_choice_none_named_and_streamed(cluster: RunningCluster) -> None:
    async def run() -> tuple[Any, Any, list[Any]]:
        async with openai_client(cluster) as client:
            ask = [{"role": "user", "content": "what time is it in Lima?"}]
            named = await client.chat.completions.create(
                model=MODEL,
                messages=ask,
                tools=[WEATHER_TOOL, TIME_TOOL],
                tool_choice={"type": "function", "function": {"name": "get_time"}},
                parallel_tool_calls=False,
            )
            none = await client.chat.completions.create(
                model=MODEL, messages=ask, tools=[WEATHER_TOOL], tool_choice="none"
            )
            stream = await client.chat.completions.create(
                model=MODEL, messages=ask, tools=[TIME_TOOL], tool_choice="required", stream=True
            )
            chunks = [chunk async for chunk in stream]
            return named, none, chunks

    named, none, chunks = asyncio.run(run())
    (call,) = named.choices[0].message.tool_calls
    assert call.function.name == "get_time" and named.choices[0].finish_reason == "tool_calls"
    assert none.choices[0].message.content == answer_for("what time is it in Lima?")
    assert not none.choices[0].message.tool_calls
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    streamed = [tc for d in deltas for tc in d.tool_calls or []]
    assert [tc.function.name for tc in streamed] == ["get_time"] and streamed[0].id
    assert "what time is it in Lima?" in json.loads(streamed[0].function.arguments)["city"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_native_api_tool_round_trip(cluster: RunningCluster) -> None:
    tools = [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    status, _, first = http_json(
        "POST",
        f"{cluster.url}/api/v1/task?wait=20",
        {"prompt": "find the manual", "tools": tools, "tool_choice": "required"},
        headers=cluster.headers,
    )
    assert status == 200 and first["status"] == "succeeded", first
    (call,) = first["result"]["tool_calls"]
    assert call["name"] == "lookup" and call["id"] and "find the manual" in call["args"]["q"]
    status, _, second = http_json(
        "POST",
        f"{cluster.url}/api/v1/task?wait=20",
        {
            "history": [
                {"role": "user", "text": "find the manual"},
                {"role": "model", "tool_calls": [call]},
            ],
            "tool_results": [{"name": "lookup", "id": call["id"], "response": {"page": "p-314"}}],
            "tools": tools,
        },
        headers=cluster.headers,
    )
    assert status == 200 and second["status"] == "succeeded", second
    assert "p-314" in second["result"]["text"] and "tool_calls" not in second["result"]


def test_gemini_drop_in_function_calls_and_response_schema_by_rest(cluster: RunningCluster) -> None:
    """Gemini's own REST shapes: OpenAPI-form parameters and responseSchema, toolConfig ANY."""
    url = f"{cluster.url}/v1beta/models/{MODEL}:generateContent"
    headers = {"x-goog-api-key": cluster.api_key}
    declaration = {
        "name": "book_table",
        "parameters": {
            "type": "OBJECT",
            "properties": {"guests": {"type": "INTEGER"}, "note": {"type": "STRING", "nullable": True}},
            "required": ["guests"],
        },
    }
    status, _, called = http_json(
        "POST",
        url,
        {
            "contents": [{"role": "user", "parts": [{"text": "table for four"}]}],
            "tools": [{"functionDeclarations": [declaration]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["book_table"]}},
        },
        headers=headers,
    )
    assert status == 200, called
    (part,) = called["candidates"][0]["content"]["parts"]
    assert part["functionCall"]["name"] == "book_table" and isinstance(
        part["functionCall"]["args"]["guests"], int
    )
    schema = {"type": "OBJECT", "properties": {"title": {"type": "STRING"}}, "required": ["title"]}
    status, _, shaped = http_json(
        "POST",
        url,
        {
            "contents": [{"parts": [{"text": "name this dish"}]}],
            "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
        },
        headers=headers,
    )
    assert status == 200, shaped
    assert "name this dish" in json.loads(shaped["candidates"][0]["content"]["parts"][0]["text"])["title"]


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_litellm_as_a_client(cluster: RunningCluster) -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list
    import litellm

    reply = litellm.completion(
        model=f"openai/{MODEL}",
        api_base=f"{cluster.url}/v1",
        api_key=cluster.api_key,
        messages=[{"role": "user", "content": "weather in Faro?"}],
        tools=[WEATHER_TOOL],
    )
    (call,) = reply.choices[0].message.tool_calls
    assert (
        call.function.name == "get_weather"
        and "weather in Faro?" in json.loads(call.function.arguments)["city"]
    )


def test_a_tool_loop_held_in_a_batchgate_session(cluster: RunningCluster) -> None:
    """The model's calls and the tool's results are turns of the session, sent as Gemini
    functionCall/functionResponse parts on the next turn."""
    session = f"agent-{os.getpid()}-{os.urandom(4).hex()}"
    tools = [{"name": "stock", "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}}}]
    url = f"{cluster.url}/api/v1/task?wait=20"
    status, _, first = http_json(
        "POST",
        url,
        {"prompt": "is sku 7 in stock", "tools": tools, "session_id": session},
        headers=cluster.headers,
    )
    assert status == 200 and first["status"] == "succeeded", first
    (call,) = first["result"]["tool_calls"]
    status, _, second = http_json(
        "POST",
        url,
        {
            "tool_results": [{"name": "stock", "id": call["id"], "response": {"count": "units-42"}}],
            "tools": tools,
            "session_id": session,
        },
        headers=cluster.headers,
    )
    assert status == 200 and second["status"] == "succeeded", second
    assert (
        "units-42" in second["result"]["text"] and answer_for("is sku 7 in stock") in second["result"]["text"]
    )
    status, _, stored = http_json("GET", f"{cluster.url}/api/v1/sessions/{session}", headers=cluster.headers)
    assert status == 200
    assert [(t["role"], [next(iter(p)) for p in t.get("parts", [])]) for t in stored["turns"]] == [
        ("user", []),
        ("model", ["function_call"]),
        ("user", ["function_response"]),
        ("model", []),
    ]
    sent = [r["body"] for r in sim_requests(cluster) if "units-42" in json.dumps(r["body"])]
    assert [next(iter(p)) for c in sent[-1]["contents"] for p in c["parts"]] == [
        "text",
        "functionCall",
        "functionResponse",
    ]


def test_functions_and_a_schema_together_answer_json_after_the_tool_loop(cluster: RunningCluster) -> None:
    """Gemini 2.5 refuses function calling with JSON output (the simulator does too): the
    schema travels in the instruction and the final text answer is checked against it."""
    schema = Verdict.model_json_schema()
    response_format = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}

    async def run() -> tuple[Any, Any]:
        async with openai_client(cluster) as client:
            messages: list[Any] = [{"role": "user", "content": "rate the weather in Nice"}]
            first = await client.chat.completions.create(
                model=MODEL, messages=messages, tools=[WEATHER_TOOL], response_format=response_format
            )
            call = first.choices[0].message.tool_calls[0]
            messages.append(first.choices[0].message.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "mistral-9"})
            second = await client.chat.completions.create(
                model=MODEL, messages=messages, tools=[WEATHER_TOOL], response_format=response_format
            )
            return first, second

    first, second = asyncio.run(run())
    assert first.choices[0].finish_reason == "tool_calls"
    answer = json.loads(second.choices[0].message.content)
    jsonschema.validate(answer, schema)
    assert "mistral-9" in answer["summary"] and "rate the weather in Nice" in answer["summary"]
    sent = [r["body"] for r in sim_requests(cluster) if "mistral-9" in json.dumps(r["body"])][-1]
    assert "responseMimeType" not in json.dumps(sent.get("generationConfig") or {})
    assert "<answer_schema>" in json.dumps(sent["systemInstruction"])


def test_gemini_3_thought_signatures_go_back_with_their_calls(cluster: RunningCluster) -> None:
    """Gemini 3 refuses a function call sent back without the model's thought signature (the
    simulator too, for gemini-3 models): the drop-ins carry it both ways, and a call without
    one (here given back by the native API's client) gets Gemini's documented stand-in."""
    model = "gemini-3-pro-preview"

    async def run() -> tuple[Any, Any]:
        async with openai_client(cluster) as client:
            messages: list[Any] = [{"role": "user", "content": "weather in Oslo, gemini 3?"}]
            first = await client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
            messages.append(first.choices[0].message.model_dump(exclude_none=True))
            call = first.choices[0].message.tool_calls[0]
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "fog-3"})
            second = await client.chat.completions.create(
                model=model, messages=messages, tools=[WEATHER_TOOL]
            )
            return first, second

    first, second = asyncio.run(run())
    signature = (
        first.choices[0].message.tool_calls[0].model_dump()["extra_content"]["google"]["thought_signature"]
    )
    assert signature and "fog-3" in second.choices[0].message.content
    sent = [r["body"] for r in sim_requests(cluster) if "fog-3" in json.dumps(r["body"])][-1]
    (call_part,) = sent["contents"][1]["parts"]
    assert call_part["thoughtSignature"] == signature

    status, _, gemini = http_json(
        "POST",
        f"{cluster.url}/v1beta/models/{model}:generateContent",
        {
            "contents": [{"role": "user", "parts": [{"text": "book it, gemini 3"}]}],
            "tools": [{"functionDeclarations": [{"name": "book"}]}],
        },
        headers={"x-goog-api-key": cluster.api_key},
    )
    assert status == 200 and gemini["candidates"][0]["content"]["parts"][0]["thoughtSignature"], gemini

    tools = [{"name": "lookup"}]
    status, _, native = http_json(
        "POST",
        f"{cluster.url}/api/v1/task?wait=20",
        {
            "model": model,
            "history": [
                {"role": "user", "text": "find it"},
                {"role": "model", "tool_calls": [{"name": "lookup"}]},
            ],
            "tool_results": [{"name": "lookup", "response": {"at": "shelf-5"}}],
            "tools": tools,
        },
        headers=cluster.headers,
    )
    assert status == 200 and native["status"] == "succeeded" and "shelf-5" in native["result"]["text"], native
    sent = [r["body"] for r in sim_requests(cluster) if "shelf-5" in json.dumps(r["body"])][-1]
    assert sent["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
