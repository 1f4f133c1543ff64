"""The unmodified openai SDK as a batchgate client: batched, streamed, OpenAI's error shapes."""

from __future__ import annotations

import json

import openai
import pytest

from batching.simulator.answers import answer_for
from tests.clients import openai_sdk_replies
from tests.conftest import Stack
from tests.harness import http_json


def test_fifty_concurrent_chat_completions_succeed_and_are_batched(stack: Stack) -> None:
    stack.sim_reset()
    replies = openai_sdk_replies(stack.api, stack.api_key, [f"openai question {i}" for i in range(50)])
    assert [r.choices[0].message.content for r in replies] == [
        answer_for(f"openai question {i}") for i in range(50)
    ]
    assert all(r.usage.total_tokens > 0 and r.choices[0].finish_reason == "stop" for r in replies)
    stats = stack.sim_stats()
    # Batched: at least four requests a call on average (unbatched: 50 calls). How many more
    # depends on how fast the 50 submissions reach the worker, i.e. on the machine.
    assert stats["items"] == 50 and stats["calls"] <= 50 // 4, stats


def test_streaming_system_messages_and_history(stack: Stack) -> None:
    with openai.OpenAI(api_key=stack.api_key, base_url=f"{stack.api}/v1") as client:
        stream = client.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "My name is Ana."},
                {"role": "assistant", "content": "Hello Ana."},
                {"role": "user", "content": "What is my name?"},
            ],
            temperature=0.1,
            max_tokens=64,
            stream=True,
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "What is my name?" in text
    assert len([c for c in chunks if c.choices[0].delta.content]) >= 2, chunks  # relayed as they came
    # The earlier turns reached Gemini as turns, the system message as its system instruction.
    calls = http_json("GET", f"{stack.simulator}/_sim/requests")[2]["requests"]
    (call,) = [c for c in calls if c["body"]["contents"][-1]["parts"][-1]["text"] == "What is my name?"]
    assert [(c["role"], c["parts"][0]["text"]) for c in call["body"]["contents"]] == [
        ("user", "My name is Ana."),
        ("model", "Hello Ana."),
        ("user", "What is my name?"),
    ]
    assert "Be brief." in json.dumps(call["body"]["systemInstruction"])
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"


def test_errors_come_back_in_openais_shape(stack: Stack) -> None:
    stranger = openai.OpenAI(api_key="bg_not-a-key", base_url=f"{stack.api}/v1", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )
    client = openai.OpenAI(api_key=stack.api_key, base_url=f"{stack.api}/v1", max_retries=0)
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    assert "logprobs" in caught.value.message
    status, _, body = http_json(
        "POST",
        f"{stack.api}/v1/chat/completions",
        {"model": "gemini-2.5-flash", "messages": [{"role": "assistant", "content": "hi"}]},
        headers={"Authorization": f"Bearer {stack.api_key}"},
    )
    assert (
        status == 400 and body["error"]["type"] == "invalid_request_error" and body["error"]["param"] is None
    )
