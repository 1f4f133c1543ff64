"""A day quota that runs out stops the calls to its model until it resets: through the real
google-genai client against the simulator's RPD quota, and through the batch engine."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis

from batchgate.cluster_pacer import ClusterPacer
from batching.daily_quota import DAILY_QUOTA_EXHAUSTED, DailyQuotaGate, daily_quota_error, quota_ids
from batching.engine import BatchInferenceEngine
from batching.genai_client import GenaiModelClient
from batching.packing import PackingLimits
from batching.quota import ModelQuota, QuotaTable
from batching.retry import RetryPolicy
from batching.simulator import SimulatorThread
from batching.types import InferenceRequest, ModelCall, ModelCallError
from tests.batching.sim_helpers import MODEL, configure, sim_stats
from tests.harness import http_json

pytestmark = pytest.mark.usefixtures("baseline")


def _body(*quota: str) -> dict[str, object]:
    violations = [{"quotaId": q, "quotaValue": "10"} for q in quota]
    return {
        "error": {
            "code": 429,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "53s"},
            ],
        }
    }


def test_only_a_day_quota_is_a_daily_refusal() -> None:
    minute = _body("GenerateRequestsPerMinutePerProjectPerModel")
    assert quota_ids(minute) == ["GenerateRequestsPerMinutePerProjectPerModel"]
    assert daily_quota_error(minute, 53.0) is None
    assert daily_quota_error({"error": {"code": 429}}, None) is None  # no QuotaFailure at all
    daily = daily_quota_error(_body("GenerateRequestsPerDayPerProjectPerModel"), 7200.0)
    assert daily is not None and (daily.code, daily.retryable, daily.retry_after_s) == (
        DAILY_QUOTA_EXHAUSTED,
        False,
        7200.0,
    )


def test_after_the_first_daily_refusal_the_model_is_not_called_until_the_reset(
    sim: SimulatorThread,
) -> None:
    configure(sim, rpd=1)
    now = [1000.0]
    call = ModelCall(model=MODEL, parts=("Say hi",))

    async def scenario() -> list[str]:
        gate = DailyQuotaGate(GenaiModelClient("test", sim.url, timeout_s=10), clock=lambda: now[0])
        codes = []
        try:
            await gate.generate(call)
            for _ in range(3):
                with pytest.raises(ModelCallError) as refused:
                    await gate.generate(call)
                codes.append(refused.value.code)
            assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 60
            assert gate.paused_for(MODEL) > 60 and gate.paused_for("another-model") == 0
            assert sim_stats(sim)["errors_by_code"] == {"429:rpd": 1}  # one call learnt it
            now[0] += gate.paused_for(MODEL)  # the reset: the model is called again
            with pytest.raises(ModelCallError):
                await gate.generate(call)
        finally:
            await gate.aclose()
        return codes

    assert asyncio.run(scenario()) == [DAILY_QUOTA_EXHAUSTED] * 3
    assert sim_stats(sim)["errors_by_code"] == {"429:rpd": 2}


def test_a_batch_over_the_day_quota_fails_with_its_code_without_a_retry_storm(sim: SimulatorThread) -> None:
    """Neither retried nor split: 40 requests (two packed calls) after the quota ran out
    cost at most one call each time the engine learns it."""
    configure(sim, rpd=1)
    requests = [InferenceRequest(id=f"t{n}", prompt=f"question {n}", model=MODEL) for n in range(40)]

    async def scenario() -> list[str | None]:
        gate = DailyQuotaGate(GenaiModelClient("test", sim.url, timeout_s=10))
        engine = BatchInferenceEngine(
            gate, PackingLimits(max_items_per_call=20), RetryPolicy(attempts=5, base_s=0.01, max_s=0.05), 1
        )
        try:
            first = await engine.run(requests[:1])
            assert first[0].ok
            results = await engine.run(requests[1:])
        finally:
            await gate.aclose()
        return [r.error_code for r in results]

    assert asyncio.run(scenario()) == [DAILY_QUOTA_EXHAUSTED] * 39
    stats = sim_stats(sim)
    assert stats["errors_by_code"] == {"429:rpd": 1} and stats["calls"] == 1


def test_workers_sharing_the_cluster_quota_stop_together_and_count_the_day_themselves(
    sim: SimulatorThread, redis_client: redis.Redis
) -> None:
    """Two workers' engines share one quota schedule in Redis: a day refusal that one of them
    meets stops the other's calls too, and a day quota the operator declared is counted
    across both, so Gemini never has to refuse."""
    configure(sim, rpd=1)
    prefix = f"p{secrets.token_hex(3)}"

    def worker(quota: ModelQuota) -> tuple[DailyQuotaGate, BatchInferenceEngine]:
        pacer = ClusterPacer(redis_client, prefix, QuotaTable(quota))
        gate = DailyQuotaGate(GenaiModelClient("test", sim.url, timeout_s=10), on_pause=pacer.pause)
        retry = RetryPolicy(attempts=5, base_s=0.01, max_s=0.05)
        return gate, BatchInferenceEngine(
            gate, PackingLimits(default_strategy="concurrent"), retry, 4, pacer=pacer
        )

    def asked(n: int, start: int) -> list[InferenceRequest]:
        return [
            InferenceRequest(id=f"t{start + i}", prompt=f"question {start + i}", model=MODEL)
            for i in range(n)
        ]

    async def scenario(quota: ModelQuota) -> list[list[str | None]]:
        (gate_a, a), (gate_b, b) = worker(quota), worker(quota)
        try:
            runs = [await a.run(asked(1, 0)), await a.run(asked(1, 1)), await b.run(asked(20, 2))]
        finally:
            await gate_a.aclose()
            await gate_b.aclose()
        return [[r.error_code for r in run] for run in runs]

    refused = [DAILY_QUOTA_EXHAUSTED]
    assert asyncio.run(scenario(ModelQuota(rpm=6000))) == [[None], refused, refused * 20]
    assert sim_stats(sim)["errors_by_code"] == {"429:rpd": 1}  # worker b never called

    http_json("POST", f"{sim.url}/_sim/reset")  # a fresh day for Gemini
    configure(sim, rpd=3)  # and the operator declares the quota
    prefix = f"p{secrets.token_hex(3)}"
    outcome = asyncio.run(scenario(ModelQuota(rpd=3)))
    assert outcome[:2] == [[None], [None]] and sorted(outcome[2], key=str) == [None] + refused * 19
    assert sim_stats(sim)["errors_by_code"] == {}  # counted here: Gemini never refused
