"""Quotas per model: the default model's from settings, others overridden by name."""

from __future__ import annotations

import pytest

from batching.quota import ModelQuota, QuotaTable, call_input_tokens
from batching.tokens import estimate_tokens
from batching.types import ModelCall


def test_overrides_name_their_model_and_keep_the_defaults_they_leave_out() -> None:
    default = ModelQuota(rpm=300, tpm=1_000_000, rpd=10_000)
    table = QuotaTable.parse(default, " gemini-2.5-pro:rpm=150,rpd=1000 ; lite:tpm=4000000;")
    assert table.of("gemini-2.5-pro") == ModelQuota(rpm=150, tpm=1_000_000, rpd=1000)
    assert table.of("lite") == ModelQuota(rpm=300, tpm=4_000_000, rpd=10_000)
    assert table.of("anything-else") == default
    assert QuotaTable.parse(ModelQuota(), "").any is False
    assert QuotaTable.parse(ModelQuota(), "pro:rpm=1").any is True


@pytest.mark.parametrize("text", ["pro", ":rpm=1", "pro:rpm", "pro:rpm=-1", "pro:qps=3", "pro:rpm=1.5"])
def test_a_malformed_override_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        QuotaTable.parse(ModelQuota(), text)


def test_a_call_counts_its_system_text_turns_and_schema() -> None:
    history = (("user", ({"text": "x" * 40},)), ("model", ({"function_call": {"name": "f"}},)))
    call = ModelCall(
        model="m", parts=("y" * 80,), system="z" * 12, history=history, response_schema={"type": "object"}
    )
    schema = estimate_tokens('{"type":"object"}')
    assert call_input_tokens(call) == 10 + 20 + 3 + schema
