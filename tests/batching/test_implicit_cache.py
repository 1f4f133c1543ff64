"""The simulator's model of Gemini's implicit cache, with time as an argument: what a call's
prompt gets from the cache, per model, in whole blocks, from a minimum length, for a while."""

from __future__ import annotations

from batching.simulator.implicit_cache import BLOCK_TOKENS, ImplicitCache
from batching.tokens import CHARS_PER_TOKEN, estimate_tokens

MODEL = "gemini-2.5-flash"
MIN = 2048
TTL = 300.0
#: A shared start of 20 whole blocks (the minimum is 8), then each call's own ending.
SHARED = "s" * (20 * BLOCK_TOKENS * CHARS_PER_TOKEN)


def admit(cache: ImplicitCache, texts: list[str], now: float, model: str = MODEL, **limits: float) -> int:
    tokens = sum(estimate_tokens(text) for text in texts)
    return cache.admit(
        model, texts, tokens, now, min_tokens=int(limits.get("min", MIN)), ttl_s=limits.get("ttl", TTL)
    )


def test_a_repeated_start_is_cached_in_whole_blocks_and_the_first_call_pays_in_full() -> None:
    cache = ImplicitCache()
    assert admit(cache, [SHARED, "first question"], now=0.0) == 0
    assert admit(cache, [SHARED, "second question, longer than the first"], now=1.0) == 20 * BLOCK_TOKENS
    assert admit(cache, [SHARED + "x" * 100, "third"], now=2.0) == 20 * BLOCK_TOKENS


def test_the_split_between_system_text_and_turns_is_part_of_the_prefix() -> None:
    cache = ImplicitCache()
    half = len(SHARED) // 2
    admit(cache, [SHARED[:half], SHARED[half:], "q"], now=0.0)
    assert admit(cache, [SHARED, "q"], now=1.0) == 10 * BLOCK_TOKENS  # up to where the split was
    assert admit(cache, [SHARED[:half], SHARED[half:], "q"], now=2.0) == 20 * BLOCK_TOKENS


def test_nothing_under_the_minimum_and_nothing_when_turned_off() -> None:
    cache = ImplicitCache()
    short = "s" * ((MIN - BLOCK_TOKENS) * CHARS_PER_TOKEN)  # 7 whole blocks, then the ending
    admit(cache, [short, "a"], now=0.0)
    assert admit(cache, [short, "b"], now=1.0) == 0
    admit(cache, [SHARED, "a"], now=0.0, min=0)
    assert len(cache) == 0


def test_each_model_has_its_own_cache_and_a_different_start_shares_nothing() -> None:
    cache = ImplicitCache()
    admit(cache, [SHARED, "a"], now=0.0)
    assert admit(cache, [SHARED, "a"], now=1.0, model="gemini-2.5-pro") == 0
    assert admit(cache, ["[other scope]\n\n" + SHARED, "a"], now=2.0) == 0


def test_a_prefix_lives_ttl_from_its_last_use() -> None:
    cache = ImplicitCache()
    admit(cache, [SHARED, "a"], now=0.0)
    assert admit(cache, [SHARED, "b"], now=TTL - 1) > 0  # used again: lives on
    assert admit(cache, [SHARED, "c"], now=2 * TTL - 2) > 0
    assert admit(cache, [SHARED, "d"], now=4 * TTL) == 0


def test_never_more_than_the_prompt_and_bounded_in_size() -> None:
    cache = ImplicitCache(max_prefixes=50)
    assert cache.admit(MODEL, [SHARED], 100, 0.0, min_tokens=MIN, ttl_s=TTL) == 0
    assert cache.admit(MODEL, [SHARED], 100, 1.0, min_tokens=MIN, ttl_s=TTL) == 100
    for n in range(20):
        admit(cache, [f"{n:04d}" + SHARED], now=2.0)
    assert len(cache) == 50
