"""Gemini's implicit cache stays with one tenant: a long prompt opens with its tenant's scope
line, so a tenant's repeated system text is billed at the cached rate and another tenant
sending the same text learns nothing (the attack: tenant b probes for tenant a's prompt).

The engine runs over the real google-genai client against the simulator, whose implicit cache
is shared by every call of its API key, as Gemini's is by every call of a project."""

from __future__ import annotations

import asyncio
import dataclasses

from batching.cache_scope import scope_line, scoped
from batching.engine import BatchInferenceEngine
from batching.genai_client import GenaiModelClient
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.simulator.server import SimulatorThread
from batching.types import InferenceRequest, InferenceResult, ModelCall
from tests.harness import http_json

MODEL = "gemini-2.5-flash"
#: A long system text (about 3,000 tokens), the kind an agent sends with every call.
SYSTEM = "You are the support agent of a company that sells paperclips; policy follows. " * 150
LONG = ModelCall(model=MODEL, parts=("x" * 4096,), system="Be brief.")


def test_every_call_opens_with_its_tenants_scope_unless_tenants_share_calls() -> None:
    limits = PackingLimits()
    call = scoped(LONG, "acme", limits)
    assert call.system == f"{scope_line('acme')}\n\nBe brief."
    assert scoped(LONG, "globex", limits).system != call.system
    assert scoped(ModelCall(model=MODEL, parts=LONG.parts), "acme", limits).system == scope_line("acme")
    # Short too: what makes a call long (an inline document, a function's result, text of
    # many tokens per character) is not known before Gemini counts it.
    short = ModelCall(model=MODEL, parts=("hi",), system="Be brief.")
    assert scoped(short, "acme", limits).system == f"{scope_line('acme')}\n\nBe brief."
    assert scoped(LONG, "", limits) == LONG  # no tenant: nothing to keep apart
    assert (
        scoped(LONG, "acme", PackingLimits(share_calls_across_tenants=True)) == LONG
    )  # the operator opted in


def run(sim: SimulatorThread, requests: list[InferenceRequest]) -> list[InferenceResult]:
    async def go() -> list[InferenceResult]:
        client = GenaiModelClient("test", sim.url, timeout_s=30)
        engine = BatchInferenceEngine(
            client, PackingLimits(), RetryPolicy(attempts=2, base_s=0.1, max_s=1.0), max_concurrent_calls=4
        )
        try:
            return await engine.run(requests)
        finally:
            await client.aclose()

    return asyncio.run(go())


def request(n: int, tenant: str, strategy: str = "concurrent") -> InferenceRequest:
    return InferenceRequest(
        id=f"{tenant}-{n}",
        prompt=f"Question {n}?",
        model=MODEL,
        system=SYSTEM,
        tenant=tenant,
        strategy=strategy,
    )


def test_a_tenants_repeated_system_text_is_cached_and_another_tenant_never_hits_it(
    sim: SimulatorThread,
) -> None:
    assert http_json("POST", f"{sim.url}/_sim/reset")[0] == 200
    [first] = run(sim, [request(1, "acme")])
    [again] = run(sim, [request(2, "acme")])
    assert first.ok and again.ok
    assert first.cached_input_tokens == 0
    assert 2048 <= again.cached_input_tokens < again.input_tokens  # the system text, not the question

    # The attack: globex sends acme's system text, to learn from its bill whether acme uses it.
    [probe] = run(sim, [request(3, "globex")])
    assert probe.ok and probe.cached_input_tokens == 0
    # Nor by writing acme's scope line into its own system text: its own line comes first.
    forged = dataclasses.replace(
        request(3, "globex"), id="forged", system=f"{scope_line('acme')}\n\n{SYSTEM}"
    )
    [forgery] = run(sim, [forged])
    assert forgery.ok and forgery.cached_input_tokens == 0
    [probe_again] = run(sim, [request(4, "globex")])
    assert probe_again.cached_input_tokens > 0  # globex's own cache works for globex

    # Packed calls share the prefix too: scope, system text, packing instruction; the call's
    # cached tokens are split among its items like its input.
    packed = run(sim, [request(n, "acme", "pack") for n in range(5, 9)])
    assert all(
        r.ok and r.items_in_call == 4 and r.cached_input_tokens > 0 for r in packed
    )  # acme's system text, cached
    results = [first, again, probe, forgery, probe_again, *packed]
    stats = http_json("GET", f"{sim.url}/_sim/stats")[2]
    assert sum(r.cached_input_tokens for r in results) == stats["cached_tokens"]
    assert sum(r.input_tokens for r in results) == stats["prompt_tokens"]
