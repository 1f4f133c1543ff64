"""A scripted stand-in for Gemini (the engine's one outside dependency) and the engine set up around it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from batching.engine import BatchInferenceEngine
from batching.packed_prompt import parse_items
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.types import InferenceRequest, ModelCall, ModelCallError, ModelReply


class ScriptedGemini:
    """Answers ``A:<prompt>``; can drop items, fail or refuse calls, cut packed answers short,
    and count concurrency."""

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []
        self.fail_next: list[ModelCallError] = []
        self.drop: set[str] = set()
        self.always_fail: set[str] = set()
        #: Any call that carries one of these prompts (alone or packed) fails with its error.
        self.refuse: dict[str, ModelCallError] = {}
        #: Complete entries a packed answer has room for; the next one is cut mid-way, with
        #: finish reason MAX_TOKENS (None: room for all).
        self.room: int | None = None
        #: Rewrites a packed answer's entries (an injected prompt, a confused model).
        self.tamper: Callable[[list[dict]], list[dict]] | None = None
        self.finish_reason = "STOP"
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.fail_next:
                raise self.fail_next.pop(0)
            items = parse_items(call.parts[-1]) if call.response_schema else None
            for prompt in [i["prompt"] for i in items] if items is not None else [call.parts[-1]]:
                if prompt in self.refuse:
                    raise self.refuse[prompt]
            if items is None:
                if call.parts[-1] in self.always_fail:
                    raise ModelCallError("model_unavailable", "INTERNAL boom", status=500, retryable=True)
                return ModelReply(f"A:{call.parts[-1]}", 10, 5, self.finish_reason)
            answers = [
                {"id": i["id"], "answer": f"A:{i['prompt']}"}
                for i in items
                if i["prompt"] not in self.drop and i["prompt"] not in self.always_fail
            ]
            if self.tamper is not None:
                answers = self.tamper(answers)
            if self.room is not None and len(answers) > self.room:
                return ModelReply(_cut(answers, self.room), 100, 40, "MAX_TOKENS")
            return ModelReply(json.dumps({"answers": answers}), 100, 40, self.finish_reason)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def _cut(answers: list[dict], room: int) -> str:
    """The JSON of ``answers`` as a model out of tokens writes it: ``room`` whole entries, then
    half of the next one."""
    whole = json.dumps({"answers": answers[:room]})[: -len("]}")]
    partial = json.dumps(answers[room])
    return whole + (", " if room else "") + partial[: len(partial) // 2]


def make_engine(gemini: ScriptedGemini, sleeps: list[float], **limits: object) -> BatchInferenceEngine:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return BatchInferenceEngine(
        gemini,
        PackingLimits(**limits),  # type: ignore[arg-type]
        RetryPolicy(attempts=3, base_s=0.1, max_s=1.0),
        max_concurrent_calls=4,
        sleep=fake_sleep,
        jitter=lambda: 0.5,
    )


def batch(n: int, **kw: object) -> list[InferenceRequest]:
    return [InferenceRequest(id=f"t{i}", prompt=f"p{i}", model="m", **kw) for i in range(n)]  # type: ignore[arg-type]


def run(engine: BatchInferenceEngine, requests: list[InferenceRequest]) -> list:
    return asyncio.run(engine.run(requests))


def call_sizes(calls: list[ModelCall]) -> list[int]:
    """Items per call, largest first (concurrent calls finish in no fixed order)."""
    return sorted(
        (len(parse_items(c.parts[-1]) or []) if c.response_schema else 1 for c in calls), reverse=True
    )
