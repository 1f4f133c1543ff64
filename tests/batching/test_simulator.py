"""The embedded Gemini simulator, driven by the real google-genai SDK over HTTP: what
generateContent answers, plain, async, streamed, packed and in JSON mode.

One simulator serves the module from a background thread; every test starts from the
module's baseline configuration and zeroed stats. Waits are polls with deadlines or
explicit gates, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from batching.simulator import SimulatorThread, answer_for
from batching.tokens import estimate_tokens
from tests.batching.sim_helpers import (
    API_VERSIONS,
    MODEL,
    async_sdk_client,
    json_config,
    packed_call,
    sim_stats,
    trusted_answers,
)
from tests.harness import http_json

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]


def test_plain_call_answers_the_last_text_part_with_usage(client: genai.Client, sim: SimulatorThread) -> None:
    system, context, prompt = "Be brief.", "Some earlier context. " * 5, "What is batching?"
    response = client.models.generate_content(
        model=MODEL,
        contents=[types.Content(role="user", parts=[types.Part(text=context), types.Part(text=prompt)])],
        config=types.GenerateContentConfig(system_instruction=system, max_output_tokens=500, temperature=0.1),
    )
    assert response.text == answer_for(prompt)
    usage = response.usage_metadata
    assert usage is not None
    expected_input = estimate_tokens(system) + estimate_tokens(context) + estimate_tokens(prompt)
    assert usage.prompt_token_count == expected_input
    assert usage.candidates_token_count == estimate_tokens(answer_for(prompt))
    assert usage.total_token_count == expected_input + estimate_tokens(answer_for(prompt))
    assert response.model_version == MODEL
    stats = sim_stats(sim)
    assert (stats["calls"], stats["items"], stats["errors"], stats["plain_calls"]) == (1, 1, 0, 1)


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_async_calls_each_get_their_own_answer(sim: SimulatorThread, api_version: str) -> None:
    prompts = [f"async prompt {n}" for n in range(20)]

    async def scenario() -> list[str | None]:
        async with async_sdk_client(sim.url, api_version) as sdk:
            calls = [sdk.aio.models.generate_content(model=MODEL, contents=p) for p in prompts]
            responses = await asyncio.gather(*calls)
        return [r.text for r in responses]

    assert asyncio.run(scenario()) == [answer_for(p) for p in prompts]
    assert sim_stats(sim)["calls"] == len(prompts)


def test_streamed_answer_arrives_in_chunks_with_usage_last(
    client: genai.Client, sim: SimulatorThread
) -> None:
    prompt = "stream this answer"
    chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt))
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == answer_for(prompt)
    assert all(c.usage_metadata is None for c in chunks[:-1])
    last = chunks[-1].usage_metadata
    assert last is not None and last.candidates_token_count == estimate_tokens(answer_for(prompt))
    assert sim_stats(sim)["stream_calls"] == 1


def test_packed_call_returns_one_answer_per_id_in_order(client: genai.Client, sim: SimulatorThread) -> None:
    items: list[dict[str, Any]] = [{"id": f"r{n}", "prompt": f"packed question {n}"} for n in range(5)]
    items[2]["context"] = {"user": "alice"}
    response = packed_call(client, items)
    assert response.text is not None
    assert [a["id"] for a in json.loads(response.text)["answers"]] == [i["id"] for i in items]
    assert trusted_answers(response.text, items) == {i["id"]: answer_for(i["prompt"]) for i in items}
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == estimate_tokens(response.text)
    stats = sim_stats(sim)
    assert (stats["calls"], stats["items"], stats["packed_calls"], stats["dropped_items"]) == (1, 5, 1, 0)


def test_json_mode_without_packed_items_follows_the_schema(client: genai.Client) -> None:
    prompt = "describe a cat"
    schema = {
        "type": "OBJECT",
        "properties": {"name": {"type": "STRING"}, "legs": {"type": "INTEGER"}, "ok": {"type": "BOOLEAN"}},
    }
    response = client.models.generate_content(model=MODEL, contents=prompt, config=json_config(schema))
    assert response.text is not None
    value = json.loads(response.text)
    assert value["name"] == answer_for(prompt) and isinstance(value["legs"], int) and value["ok"] is True

    json_schema = {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "number"}}}}
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=json_schema
    )
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert response.text is not None and isinstance(json.loads(response.text)[0]["x"], float)

    response = client.models.generate_content(model=MODEL, contents=prompt, config=json_config())
    assert response.text is not None and json.loads(response.text) == answer_for(prompt)


def test_malformed_bodies_and_unknown_paths_get_gemini_errors(
    client: genai.Client, sim: SimulatorThread
) -> None:
    url = f"{sim.url}/v1beta/models/{MODEL}:generateContent"
    bodies: list[Any] = [[], {}, {"contents": "x"}, {"contents": [{"role": "user", "parts": [{"text": 3}]}]}]
    for body in bodies:
        status, _, reply = http_json("POST", url, body)
        assert status == 400 and reply["error"]["status"] == "INVALID_ARGUMENT", (body, reply)
    status, _, reply = http_json("GET", f"{sim.url}/v1/nothing/here")
    assert (status, reply["error"]["code"], reply["error"]["status"]) == (404, 404, "NOT_FOUND")
    with pytest.raises(errors.ClientError) as missing:
        client.models.generate_content(model="tunedModels/unknown", contents="hi")
    assert (missing.value.code, missing.value.status) == (404, "NOT_FOUND")
    assert sim_stats(sim)["bad_requests"] == 4
    assert http_json("GET", f"{sim.url}/health")[:3:2] == (200, {"status": "ok"})


def test_an_answer_longer_than_max_output_tokens_is_cut_with_max_tokens(
    client: genai.Client, sim: SimulatorThread
) -> None:
    prompt = "a question whose answer is long " * 8
    short = client.models.generate_content(
        model=MODEL, contents=prompt, config=types.GenerateContentConfig(max_output_tokens=10)
    )
    assert short.text == answer_for(prompt)[:40]
    assert short.candidates and short.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    full = client.models.generate_content(
        model=MODEL, contents=prompt, config=types.GenerateContentConfig(max_output_tokens=1000)
    )
    assert full.text == answer_for(prompt)
    assert full.candidates and full.candidates[0].finish_reason == types.FinishReason.STOP
    chunks = list(
        client.models.generate_content_stream(
            model=MODEL, contents=prompt, config=types.GenerateContentConfig(max_output_tokens=10)
        )
    )
    assert "".join(c.text or "" for c in chunks) == answer_for(prompt)[:40]
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
