"""Inline parts in the simulator: an image's prompt tokens, and inline data that is not base64."""

from __future__ import annotations

import base64

import pytest
from google import genai
from google.genai import types

from batching.simulator import SimulatorThread, answer_for
from batching.tokens import estimate_tokens
from tests.batching.sim_helpers import MODEL, post_call, sim_stats

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]


IMAGE_TOKENS = 258
#: A 1x1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def api_version() -> str:
    """Inline parts are driven through v1beta only."""
    return "v1beta"


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
    status, reply = post_call(sim, {"contents": [{"parts": [file_part, {"text": prompt}]}]})
    assert status == 200 and reply["usageMetadata"]["promptTokenCount"] == estimate_tokens(prompt)
    stats = sim_stats(sim)
    assert (stats["inline_parts"], stats["calls"]) == (1, 2)


def test_inline_data_that_is_not_base64_is_rejected(sim: SimulatorThread) -> None:
    for data in ("not base64!!", "YWJ", 7):
        part = {"inline_data": {"mime_type": "image/png", "data": data}}
        status, reply = post_call(sim, {"contents": [{"parts": [part, {"text": "hi"}]}]})
        assert status == 400 and reply["error"]["status"] == "INVALID_ARGUMENT", data
    stats = sim_stats(sim)
    assert (stats["bad_requests"], stats["calls"], stats["inline_parts"]) == (3, 0, 0)
