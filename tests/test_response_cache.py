"""Cache keys are canonical; time-sensitive prompts are recognised."""

from __future__ import annotations

from batchgate.response_cache import cache_key, is_time_sensitive

WORDS = ("now", "today", "latest", "this week")


def test_key_ignores_dict_order_and_distinguishes_every_field() -> None:
    base = cache_key("m", "sys", {"temperature": 0.1, "top_k": 3}, "p", {"a": 1, "b": 2})
    assert base == cache_key("m", "sys", {"top_k": 3, "temperature": 0.1}, "p", {"b": 2, "a": 1})
    variants = [
        cache_key("m2", "sys", {"temperature": 0.1, "top_k": 3}, "p", {"a": 1, "b": 2}),
        cache_key("m", None, {"temperature": 0.1, "top_k": 3}, "p", {"a": 1, "b": 2}),
        cache_key("m", "sys", {"temperature": 0.2, "top_k": 3}, "p", {"a": 1, "b": 2}),
        cache_key("m", "sys", {"temperature": 0.1, "top_k": 3}, "p ", {"a": 1, "b": 2}),
        cache_key("m", "sys", {"temperature": 0.1, "top_k": 3}, "p", None),
    ]
    assert len({base, *variants}) == 6


def test_time_sensitive_words_match_whole_words_in_any_case() -> None:
    assert is_time_sensitive(["What is the weather TODAY?"], WORDS)
    assert is_time_sensitive(["", "show me the latest news"], WORDS)
    assert is_time_sensitive(["what happened this week"], WORDS)
    assert not is_time_sensitive(["I know nothing about snowfall"], WORDS)
    assert not is_time_sensitive(["todays"], WORDS)
    assert not is_time_sensitive(["today"], ())
