"""Agents' requests through nginx with the real SDKs: function calling, structured output and
images, on the native API and both drop-ins, still batched."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import jsonschema
import openai
import pytest
import redis
from google import genai
from google.genai import types
from pydantic import BaseModel

from batchgate.apikeys import ApiKeyStore
from batching.packed_prompt import parse_items
from batching.simulator.answers import answer_for
from tests.clients import submit_and_collect
from tests.conftest import RunningCluster
from tests.harness import http_json

MODEL = "gemini-2.5-flash"
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
#: A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
#: Gemini's prompt tokens for one small image (the simulator counts the same).
IMAGE_TOKENS = 258


class Verdict(BaseModel):
    summary: str
    score: int
    tags: list[str]


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    home: Address


def openai_client(cluster: RunningCluster) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=cluster.api_key, base_url=f"{cluster.url}/v1", max_retries=0)


def sim_requests(cluster: RunningCluster) -> list[dict[str, Any]]:
    return http_json("GET", f"{cluster.sim}/_sim/requests")[2]["requests"]


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


def test_fifty_json_schema_requests_share_at_most_ten_calls(cluster: RunningCluster) -> None:
    cluster.sim_reset()
    schema = Verdict.model_json_schema()
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": True},
    }

    async def all_of_them() -> list[Any]:
        async with openai_client(cluster) as client:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=MODEL,
                        messages=[{"role": "user", "content": f"judge essay {n}"}],
                        response_format=response_format,  # type: ignore[arg-type]
                    )
                    for n in range(50)
                )
            )

    for n, reply in enumerate(asyncio.run(all_of_them())):
        answer = json.loads(reply.choices[0].message.content)
        jsonschema.validate(answer, schema)
        assert f"judge essay {n}" in answer["summary"]
    stats = cluster.sim_stats()
    assert stats["items"] == 50 and stats["calls"] <= 10, stats


def test_openai_parse_with_a_pydantic_model_and_json_mode(cluster: RunningCluster) -> None:
    async def run() -> tuple[Any, Any]:
        async with openai_client(cluster) as client:
            parsed = await client.chat.completions.parse(
                model=MODEL,
                messages=[{"role": "user", "content": "who lives at the old mill?"}],
                response_format=Person,
            )
            loose = await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "any JSON object please"}],
                response_format={"type": "json_object"},
            )
            return parsed, loose

    parsed, loose = asyncio.run(run())
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person) and isinstance(person.home, Address)
    assert "who lives at the old mill?" in person.name
    assert isinstance(json.loads(loose.choices[0].message.content), dict)


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


def test_a_badjson_item_fails_alone_and_its_batch_mates_succeed(cluster: RunningCluster) -> None:
    cluster.sim_reset()
    schema = Verdict.model_json_schema()
    prompts = [f"rate item {n}" for n in range(7)] + ["rate this [[sim:badjson]] item"]
    bodies = [{"prompt": p, "response_schema": schema} for p in prompts]
    run = submit_and_collect(cluster.url, api_key=cluster.api_key, bodies=bodies)
    *good, bad = run.bodies
    assert bad is not None and bad["status"] == "failed", bad
    assert bad["error"]["code"] == "invalid_structured_output", bad
    for prompt, body in zip(prompts, good, strict=False):
        assert body is not None and body["status"] == "succeeded", body
        answer = json.loads(body["result"]["text"])
        jsonschema.validate(answer, schema)
        assert prompt in answer["summary"]
    assert cluster.sim_stats()["calls"] < len(prompts)  # the seven were packed


def test_drop_ins_answer_an_invalid_structured_answer_with_422(cluster: RunningCluster) -> None:
    async def run() -> None:
        async with openai_client(cluster) as client:
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "judge [[sim:badjson]] now"}],
                response_format={"type": "json_object"},
            )

    with pytest.raises(openai.UnprocessableEntityError) as caught:
        asyncio.run(run())
    assert caught.value.code == "invalid_structured_output"
    status, _, body = http_json(
        "POST",
        f"{cluster.url}/v1beta/models/{MODEL}:generateContent",
        {
            "contents": [{"parts": [{"text": "a long story please"}]}],
            "generationConfig": {"responseMimeType": "application/json", "maxOutputTokens": 3},
        },
        headers={"x-goog-api-key": cluster.api_key},
    )
    assert status == 422 and "max_output_tokens (3)" in body["error"]["message"], body


def test_genai_sdk_parsed_schema_and_python_function_tools(cluster: RunningCluster) -> None:
    client = genai.Client(api_key=cluster.api_key, http_options=types.HttpOptions(base_url=cluster.url))
    structured = client.models.generate_content(
        model=MODEL,
        contents="review the harbour cafe",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Verdict),
    )
    assert isinstance(structured.parsed, Verdict) and "review the harbour cafe" in structured.parsed.summary

    called: list[str] = []

    def get_forecast(city: str) -> dict[str, str]:
        """The weather forecast for a city."""
        called.append(city)
        return {"forecast": f"drizzle-{len(called)}"}

    automatic = client.models.generate_content(
        model=MODEL, contents="forecast for Porto?", config=types.GenerateContentConfig(tools=[get_forecast])
    )
    assert called and "forecast for Porto?" in called[0]
    assert "drizzle-1" in (automatic.text or "")
    manual = client.models.generate_content(
        model=MODEL,
        contents="forecast for Braga?",
        config=types.GenerateContentConfig(
            tools=[get_forecast],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    (call,) = manual.function_calls or []
    assert call.name == "get_forecast" and "forecast for Braga?" in (call.args or {})["city"]
    assert len(called) == 1  # not run by the SDK


def test_images_inline_reach_the_model_and_are_counted(cluster: RunningCluster) -> None:
    async def run() -> Any:
        async with openai_client(cluster) as client:
            return await client.chat.completions.create(
                model=MODEL,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "describe this picture"},
                            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        ],
                    }
                ],
            )

    with_image = asyncio.run(run())
    assert with_image.choices[0].message.content == answer_for("describe this picture")
    plain_status, _, plain = http_json(
        "POST",
        f"{cluster.url}/v1beta/models/{MODEL}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "describe this picture"}]}]},
        headers={"x-goog-api-key": cluster.api_key},
    )
    assert plain_status == 200
    assert with_image.usage.prompt_tokens == plain["usageMetadata"]["promptTokenCount"] + IMAGE_TOKENS
    sent = [r for r in sim_requests(cluster) if "inlineData" in json.dumps(r["body"])]
    assert sent and sent[-1]["body"]["contents"][-1]["parts"][0]["inlineData"]["data"] == PNG

    status, _, native = http_json(
        "POST",
        f"{cluster.url}/api/v1/task?wait=20",
        {"prompt": "what is this", "attachments": [{"mime_type": "image/png", "data": PNG}]},
        headers=cluster.headers,
    )
    assert status == 200 and native["status"] == "succeeded", native


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


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "response_schema": {"type": "nonsense"}}, "response_schema"),
        ({"prompt": "x", "tools": [{"name": "f"}], "tool_choice": {"name": "g"}}, "tool_choice"),
        ({"prompt": "x", "tool_choice": "required"}, "tool_choice"),
        ({"prompt": "x", "attachments": [{"mime_type": "image/png", "data": "not base64!"}]}, "attachments"),
        ({"prompt": "x", "attachments": [{"mime_type": "application/x-sh", "data": PNG}]}, "attachments"),
        ({"prompt": "", "tools": [{"name": "f"}]}, "prompt"),
        ({"prompt": "x", "attachments": [{"mime_type": "image/png", "data": "AAA\n"}]}, "attachments"),
        ({"prompt": "x", "history": [{"role": "user", "tool_calls": [{"name": "f"}]}]}, "history"),
        ({"tool_results": [{"name": "f", "response": {}}]}, "tool_results"),
        (
            {
                "prompt": "and now?",
                "history": [{"role": "user", "text": "q"}, {"role": "model", "tool_calls": [{"name": "f"}]}],
            },
            "tool_results",
        ),
    ],
)
def test_native_api_refuses_what_it_cannot_honour(cluster: RunningCluster, body: dict, field: str) -> None:
    status, _, answer = http_json("POST", f"{cluster.url}/api/v1/tasks", body, headers=cluster.headers)
    assert status == 422 and field in answer["error"]["message"], answer


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        (
            "/v1/chat/completions",
            {
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                    }
                ],
            },
            "data URL",
        ),
        (
            "/v1/chat/completions",
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search"}],
            },
            "type function",
        ),
        (
            "/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]},
            "tool_call_id",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]},
            "functionDeclarations",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"responseMimeType": "text/x.enum"},
            },
            "responseMimeType",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/f"}}]}]},
            "inlineData",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f", "args": {}}}]}]},
            "model turns",
        ),
        (
            "/v1/chat/completions",
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": "q"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        ],
                    },
                    {"role": "user", "content": "never mind"},
                ],
            },
            "tool_results",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            },
            "toolConfig",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "f"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}},
            },
            "allowedFunctionNames",
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "systemInstruction": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]},
            },
            "systemInstruction",
        ),
    ],
)
def test_drop_ins_refuse_what_they_cannot_honour(
    cluster: RunningCluster, path: str, body: dict, words: str
) -> None:
    headers = {"Authorization": f"Bearer {cluster.api_key}", "x-goog-api-key": cluster.api_key}
    status, _, answer = http_json("POST", f"{cluster.url}{path}", body, headers=headers)
    assert status == 400 and words in answer["error"]["message"], answer


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


def test_two_tenants_with_one_schema_and_one_tool_set_never_share_a_call(cluster: RunningCluster) -> None:
    """Packing by schema or by functions stays within a tenant: an item can read, and be
    steered by, its call-mates."""
    settings = cluster.settings
    keys = ApiKeyStore(
        redis.Redis.from_url(settings.broker.redis_url, decode_responses=True), settings.broker.key_prefix
    )
    other = keys.create("premium", "other tenant")
    tag = os.urandom(3).hex()
    schema = Verdict.model_json_schema()
    tools = [{"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    bodies = [
        {"prompt": f"{owner}-{tag}-{kind}-{n}", **extra}
        for owner in ("mine", "theirs")
        for kind, extra in (("schema", {"response_schema": schema}), ("tools", {"tools": tools}))
        for n in range(8)
    ]
    cluster.sim_reset()
    run = submit_and_collect(cluster.url, bodies=bodies, api_key=[cluster.api_key] * 16 + [other] * 16)
    assert all(body is not None and body["status"] == "succeeded" for body in run.bodies), run.bodies
    packed = [
        parse_items(r["body"]["contents"][-1]["parts"][-1]["text"]) or [] for r in sim_requests(cluster)
    ]
    owners = [{str(item["prompt"]).split("-")[0] for item in items} for items in packed if items]
    assert owners and all(len(seen) == 1 for seen in owners), owners


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
