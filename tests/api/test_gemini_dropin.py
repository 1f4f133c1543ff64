"""The unmodified google-genai SDK as a batchgate client: batched, in Gemini's shapes."""

from __future__ import annotations

import contextlib

import pytest
from google import genai
from google.genai import errors, types

from batching.simulator.answers import answer_for
from tests.clients import gemini_sdk_replies
from tests.conftest import Stack
from tests.harness import http_json


def client(stack: Stack, key: str | None = None, api_version: str | None = None) -> genai.Client:
    options = (
        types.HttpOptions(base_url=stack.api, api_version=api_version)
        if api_version
        else types.HttpOptions(base_url=stack.api)
    )
    return genai.Client(api_key=key or stack.api_key, http_options=options)


def test_fifty_concurrent_sdk_calls_succeed_and_are_batched(stack: Stack) -> None:
    stack.sim_reset()
    replies = gemini_sdk_replies(stack.api, stack.api_key, [f"drop-in question {i}" for i in range(50)])
    assert [r.text for r in replies] == [answer_for(f"drop-in question {i}") for i in range(50)]
    assert all(r.usage_metadata and r.usage_metadata.total_token_count for r in replies)
    stats = stack.sim_stats()
    # Batched: at least four requests a call on average (unbatched: 50 calls). How many more
    # depends on how fast the 50 submissions reach the worker, i.e. on the machine.
    assert stats["items"] == 50 and stats["calls"] <= 50 // 4, stats


def test_v1beta_system_instruction_settings_and_history(stack: Stack) -> None:
    sdk = client(stack, api_version="v1beta")
    with contextlib.closing(sdk):
        reply = sdk.models.generate_content(
            model="gemini-2.5-flash",
            contents=[
                types.Content(role="user", parts=[types.Part(text="My name is Ana.")]),
                types.Content(role="model", parts=[types.Part(text="Hello Ana.")]),
                types.Content(role="user", parts=[types.Part(text="What is my name?")]),
            ],
            config=types.GenerateContentConfig(
                system_instruction="Be brief.", temperature=0.1, max_output_tokens=64
            ),
        )
    assert "What is my name?" in reply.text
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP


def test_errors_come_back_in_geminis_shape(stack: Stack) -> None:
    with (
        contextlib.closing(client(stack, key="bg_not-a-key")) as stranger,
        pytest.raises(errors.ClientError) as caught,
    ):
        stranger.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == 401 and caught.value.status == "UNAUTHENTICATED"
    with contextlib.closing(client(stack)) as sdk, pytest.raises(errors.ClientError) as caught:
        sdk.models.generate_content(
            model="gemini-2.5-flash",
            contents="hi",
            config=types.GenerateContentConfig(response_mime_type="text/x.enum"),
        )
    assert caught.value.code == 400 and "responseMimeType" in caught.value.message
    status, _, body = http_json(
        "POST",
        f"{stack.api}/v1beta/models/gemini-2.5-flash:generateContent",
        {"contents": []},
        headers=stack.headers,
    )
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT" and body["error"]["code"] == 400


def test_streaming_through_the_sdk(stack: Stack) -> None:
    with contextlib.closing(client(stack)) as sdk:
        chunks = list(
            sdk.models.generate_content_stream(model="gemini-2.5-flash", contents="stream this one")
        )
    assert "".join(c.text or "" for c in chunks) == answer_for("stream this one")
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    # The model's own chunks are relayed (the simulator streams an answer in several).
    assert len([c for c in chunks if c.text]) >= 2, chunks
    assert chunks[-1].usage_metadata.total_token_count > 0
    assert stack.sim_stats()["stream_calls"] >= 1
