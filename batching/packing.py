"""Planning which requests share a model call: pure functions over plain data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypeVar

from batching.tokens import estimate_tokens
from batching.types import InferenceRequest

T = TypeVar("T")

#: Tokens of JSON framing per packed item ({"id":"x3f09a1c2b7d4","answer":""} and the like).
ITEM_FRAMING_TOKENS = 12


@dataclass(frozen=True)
class PackingLimits:
    """How much one call may carry; all counts are estimated tokens."""

    max_items_per_call: int = 32
    max_input_tokens_per_call: int = 32000
    max_output_tokens_per_call: int = 8192
    default_max_output_tokens: int = 256
    default_strategy: str = "auto"
    #: Let requests of different tenants share a model call (single-organisation deployments
    #: only: every item of a call can read, and be steered by, every other item).
    share_calls_across_tenants: bool = False


@dataclass(frozen=True)
class CallPlan:
    """Requests answered by one call; ``packed`` calls carry several items as JSON."""

    requests: tuple[InferenceRequest, ...]

    @property
    def packed(self) -> bool:
        return len(self.requests) > 1


def output_budget(request: InferenceRequest, limits: PackingLimits) -> int:
    """Output tokens the request may use: its own ``max_output_tokens`` or the default."""
    value = request.generation.get("max_output_tokens")
    return int(value) if isinstance(value, int) and value > 0 else limits.default_max_output_tokens


def input_tokens(request: InferenceRequest) -> int:
    """Estimated input tokens the request adds to a packed call."""
    context = json.dumps(request.context, ensure_ascii=False) if request.context else ""
    return estimate_tokens(request.prompt) + estimate_tokens(context) + ITEM_FRAMING_TOKENS


def must_go_alone(request: InferenceRequest) -> bool:
    """True for a request that cannot be packed: its turns go as turns, a stream streams its
    own text, stop sequences would end the whole JSON answer of a packed call, inline data and
    function responses are parts that an item of a JSON list cannot carry, and functions to
    call besides an answer schema would ask one entry for two shapes at once."""
    return bool(
        request.history
        or request.stream
        or request.generation.get("stop_sequences")
        or request.parts
        or (request.tools is not None and request.output is not None)
    )


def plan_calls(requests: list[InferenceRequest], limits: PackingLimits) -> list[CallPlan]:
    """Split requests into calls: groups that can share a call, packed first-fit in order.

    Requests share a call only with the same tenant (unless ``share_calls_across_tenants``),
    model, system text, generation settings, strategy, functions and answer schema; a request
    that ``must_go_alone`` always has a call of its own.
    ``concurrent`` gives every request its own call; ``pack`` fills calls up to
    the item and input-token limits; ``auto`` also keeps the items' summed output budgets
    within the per-call output limit, so a long answer is never squeezed into a packed one.
    """
    groups: dict[str, list[InferenceRequest]] = {}
    plans: list[CallPlan] = []
    for request in requests:
        if must_go_alone(request):
            plans.append(CallPlan((request,)))
            continue
        key = request.group_key(limits.default_strategy, limits.share_calls_across_tenants)
        groups.setdefault(key, []).append(request)

    for members in groups.values():
        strategy = members[0].strategy or limits.default_strategy
        if strategy == "concurrent":
            plans.extend(CallPlan((r,)) for r in members)
            continue
        plans.extend(_first_fit(members, limits, respect_output=strategy == "auto"))
    return plans


def _first_fit(
    members: list[InferenceRequest], limits: PackingLimits, respect_output: bool
) -> list[CallPlan]:
    plans: list[CallPlan] = []
    current: list[InferenceRequest] = []
    used_in = used_out = 0
    for request in members:
        need_in, need_out = input_tokens(request), output_budget(request, limits)
        fits = (
            len(current) < limits.max_items_per_call
            and used_in + need_in <= limits.max_input_tokens_per_call
            and (not respect_output or used_out + need_out <= limits.max_output_tokens_per_call)
        )
        if current and not fits:
            plans.append(CallPlan(tuple(current)))
            current, used_in, used_out = [], 0, 0
        current.append(request)
        used_in += need_in
        used_out += need_out
    if current:
        plans.append(CallPlan(tuple(current)))
    return plans


def split_tokens(total: int, weights: list[int]) -> list[int]:
    """Share ``total`` among items in proportion to ``weights``; the shares add up exactly."""
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights, weight_sum = [1] * len(weights), len(weights)
    shares = [total * w // weight_sum for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (total * weights[i]) % weight_sum, reverse=True)
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


def even_chunks(items: list[T], room: int) -> list[list[T]]:
    """``items`` in as few groups of at most ``room`` (at least 1) as possible, of even sizes."""
    if not items:
        return []
    count = -(-len(items) // max(1, room))
    bounds = [len(items) * n // count for n in range(count + 1)]
    return [items[bounds[n] : bounds[n + 1]] for n in range(count)]
