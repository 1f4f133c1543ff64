"""Agents' requests through nginx with the real SDKs: structured output and images, on the
native API and both drop-ins, still batched, and what neither can honour refused (function
calling: test_agent_tools.py)."""

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
from tests.e2e.agent_helpers import MODEL, Verdict, openai_client, sim_requests
from tests.harness import http_json

#: A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
#: Gemini's prompt tokens for one small image (the simulator counts the same).
IMAGE_TOKENS = 258


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    home: Address


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
