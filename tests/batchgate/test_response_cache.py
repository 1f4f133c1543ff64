"""Cache keys are canonical and cover every field that shapes an answer; entries are per
tenant; time-sensitive prompts are recognised."""

from __future__ import annotations

import secrets

import redis

from api.schemas import TaskRequest
from batchgate.response_cache import (
    ANSWER_FIELDS,
    NOT_ANSWER_FIELDS,
    ResponseCache,
    cache_key,
    is_time_sensitive,
)

WORDS = ("now", "today", "latest", "this week")


BASE = {
    "model": "m",
    "system": "sys",
    "generation": {"temperature": 0.1, "top_k": 3},
    "prompt": "p",
    "context": {"a": 1, "b": 2},
    "history": [{"role": "user", "text": "hi"}, {"role": "model", "text": "hello"}],
    "strategy": "pack",
    "stream": True,
    "attachments": [{"mime_type": "image/png", "data": "AAAA"}],
    "tools": [{"name": "f"}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "tool_results": [{"name": "f", "response": {"r": 1}}],
    "response_schema": {"type": "object"},
    "response_mime_type": "application/json",
}


def test_key_ignores_dict_order_and_fields_that_do_not_shape_the_answer() -> None:
    reordered = {**BASE, "generation": {"top_k": 3, "temperature": 0.1}, "context": {"b": 2, "a": 1}}
    assert cache_key(BASE) == cache_key(reordered)
    # Who sent it, and bookkeeping fields, are not part of the digest (the tenant is in the
    # entry's name: ResponseCache.record_key).
    assert cache_key(BASE) == cache_key({**BASE, "tenant": "t", "user_id": "u", "session_seq": 3})
    # Absent, None, empty and false are one and the same.
    assert cache_key({"prompt": "p"}) == cache_key(
        {"prompt": "p", "system": None, "stream": False, "history": []}
    )


def test_key_distinguishes_every_field_that_shapes_the_answer() -> None:
    changed = {
        "model": "m2",
        "system": "other",
        "generation": {"temperature": 0.2, "top_k": 3},
        "prompt": "p ",
        "context": None,
        "history": [{"role": "user", "text": "hi"}],
        "strategy": "concurrent",
        "stream": False,
        "attachments": [{"mime_type": "image/png", "data": "AAAB"}],
        "tools": [{"name": "g"}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "tool_results": [{"name": "f", "response": {"r": 2}}],
        "response_schema": {"type": "array"},
        "response_mime_type": "text/plain",
    }
    assert set(changed) == set(ANSWER_FIELDS)
    keys = {cache_key({**BASE, name: value}) for name, value in changed.items()}
    assert len(keys | {cache_key(BASE)}) == len(ANSWER_FIELDS) + 1


def test_no_parallel_tool_calls_is_a_different_answer_than_the_default() -> None:
    plain = {"prompt": "p", "tools": [{"name": "f"}]}
    assert cache_key({**plain, "parallel_tool_calls": False}) != cache_key(plain)
    assert cache_key({**plain, "parallel_tool_calls": None}) == cache_key(plain)


def test_every_field_of_a_task_request_is_known_to_shape_the_answer_or_not() -> None:
    """A new request field must be placed: in the digest, or named as not shaping the answer."""
    assert set(TaskRequest.model_fields) == set(ANSWER_FIELDS) | set(NOT_ANSWER_FIELDS)


def test_entries_belong_to_a_tenant(redis_client: redis.Redis) -> None:
    cache = ResponseCache(redis_client, f"cache-{secrets.token_hex(4)}", ttl_s=60)
    digest = cache_key(BASE)
    cache.put_many([(cache.record_key("a", digest), {"text": "for a"})])
    assert cache.get("a", digest) == {"text": "for a"}
    assert cache.get("b", digest) is None
    # No tenant id, however chosen, names another tenant's entry.
    assert cache.record_key("a", digest) != cache.record_key("a:" + digest[:8], digest[8:])


def test_time_sensitive_words_match_whole_words_in_any_case() -> None:
    assert is_time_sensitive(["What is the weather TODAY?"], WORDS)
    assert is_time_sensitive(["", "show me the latest news"], WORDS)
    assert is_time_sensitive(["what happened this week"], WORDS)
    assert not is_time_sensitive(["I know nothing about snowfall"], WORDS)
    assert not is_time_sensitive(["todays"], WORDS)
    assert not is_time_sensitive(["today"], ())
