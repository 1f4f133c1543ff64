"""The simulator's implicit cache as the google-genai SDK sees it: ``cached_content_token_count``
in the usage of whole and streamed answers, counted in ``/_sim/stats``, off at 0."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

from batching.simulator import SimulatorThread
from tests.batching.sim_helpers import MODEL, configure, sim_stats

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]

SYSTEM = "Follow the house style guide, section by section. " * 200  # about 2,500 tokens


def ask(
    client: genai.Client, prompt: str, *, stream: bool = False
) -> types.GenerateContentResponseUsageMetadata:
    config = types.GenerateContentConfig(system_instruction=SYSTEM)
    if stream:
        chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt, config=config))
        usage = chunks[-1].usage_metadata
    else:
        usage = client.models.generate_content(model=MODEL, contents=prompt, config=config).usage_metadata
    assert usage is not None
    return usage


def test_a_repeated_system_text_is_reported_cached_within_the_prompt_count(
    client: genai.Client, sim: SimulatorThread
) -> None:
    first = ask(client, "First question?")
    assert not first.cached_content_token_count
    second = ask(client, "Second question?")
    streamed = ask(client, "Third question, streamed?", stream=True)
    for usage in (second, streamed):
        assert usage.cached_content_token_count is not None and usage.prompt_token_count is not None
        assert 2048 <= usage.cached_content_token_count < usage.prompt_token_count
        assert usage.total_token_count == usage.prompt_token_count + (usage.candidates_token_count or 0)
    stats = sim_stats(sim)
    assert stats["cached_tokens"] == second.cached_content_token_count + streamed.cached_content_token_count


def test_min_tokens_zero_turns_the_cache_off(client: genai.Client, sim: SimulatorThread) -> None:
    configure(sim, implicit_cache_min_tokens=0)
    ask(client, "First question?")
    assert not ask(client, "Second question?").cached_content_token_count
    assert sim_stats(sim)["cached_tokens"] == 0
