"""Planning calls from a batch: grouping, limits, strategies and token splitting."""

from __future__ import annotations

from batching.packing import PackingLimits, plan_calls, split_tokens
from batching.types import InferenceRequest


def req(n: int, **kw: object) -> InferenceRequest:
    fields: dict = {"id": f"t{n}", "prompt": f"question {n}", "model": "m"}
    fields.update(kw)
    return InferenceRequest(**fields)


def sizes(plans: list) -> list[int]:
    return [len(p.requests) for p in plans]


def test_same_settings_share_calls_up_to_the_item_limit() -> None:
    plans = plan_calls([req(i) for i in range(10)], PackingLimits(max_items_per_call=4))
    assert sizes(plans) == [4, 4, 2]
    assert [r.id for p in plans for r in p.requests] == [f"t{i}" for i in range(10)]


def test_different_models_settings_or_systems_never_share_a_call() -> None:
    batch = [
        req(0),
        req(1, model="other"),
        req(2, generation={"temperature": 0.1}),
        req(3, system="be brief"),
        req(4),
        req(5, generation={"temperature": 0.1}),
    ]
    plans = plan_calls(batch, PackingLimits())
    groups = sorted(tuple(r.id for r in p.requests) for p in plans)
    assert groups == [("t0", "t4"), ("t1",), ("t2", "t5"), ("t3",)]


def test_input_token_limit_splits_calls() -> None:
    long_prompt = "x" * 400  # 100 tokens + framing
    plans = plan_calls(
        [req(i, prompt=long_prompt) for i in range(5)], PackingLimits(max_input_tokens_per_call=250)
    )
    assert sizes(plans) == [2, 2, 1]


def test_auto_keeps_output_budgets_within_the_call_limit_and_pack_does_not() -> None:
    limits = PackingLimits(max_output_tokens_per_call=1000, default_max_output_tokens=300)
    assert sizes(plan_calls([req(i) for i in range(7)], limits)) == [3, 3, 1]
    packed = [req(i, strategy="pack") for i in range(7)]
    assert sizes(plan_calls(packed, limits)) == [7]


def test_large_output_budget_goes_alone_under_auto() -> None:
    limits = PackingLimits(max_output_tokens_per_call=1000)
    big = req(9, generation={"max_output_tokens": 900})
    plans = plan_calls([req(0), big, req(1)], limits)
    assert not any(p.packed and big in p.requests for p in plans)


def test_concurrent_strategy_gives_each_request_its_own_call() -> None:
    plans = plan_calls([req(i, strategy="concurrent") for i in range(3)], PackingLimits())
    assert sizes(plans) == [1, 1, 1]
    assert not any(p.packed for p in plans)


def test_split_tokens_is_proportional_and_exact() -> None:
    assert split_tokens(100, [1, 1, 2]) == [25, 25, 50]
    shares = split_tokens(10, [1, 1, 1])
    assert sum(shares) == 10 and max(shares) - min(shares) == 1
    assert split_tokens(7, [0, 0]) in ([4, 3], [3, 4])
    assert split_tokens(5, []) == []


def test_tenants_never_share_a_call_unless_the_operator_opts_in() -> None:
    batch = [req(i, tenant="a" if i % 2 else "b") for i in range(6)]
    plans = plan_calls(batch, PackingLimits())
    assert sorted(tuple(r.id for r in p.requests) for p in plans) == [("t0", "t2", "t4"), ("t1", "t3", "t5")]
    assert sizes(plan_calls(batch, PackingLimits(share_calls_across_tenants=True))) == [6]


def test_stop_sequences_always_get_a_call_of_their_own() -> None:
    """A stop sequence would end a packed call's whole JSON answer, not one item's."""
    stop = {"stop_sequences": ["END"]}
    batch = [req(i, generation=stop, strategy="pack") for i in range(3)] + [req(3), req(4)]
    batch += [req(i, generation={"stop_sequences": []}) for i in (5, 6)]  # none: packed as usual
    plans = plan_calls(batch, PackingLimits())
    assert sorted(tuple(r.id for r in p.requests) for p in plans) == [
        ("t0",),
        ("t1",),
        ("t2",),
        ("t3", "t4"),
        ("t5", "t6"),
    ]
