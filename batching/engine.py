"""BatchInferenceEngine: answers a batch of requests with as few model calls as the limits allow."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from batching.call_pacer import CallPacer
from batching.model_client import ModelClient
from batching.packed_prompt import answer_schema, new_item_ids, read_answers, render_items
from batching.packing import CallPlan, PackingLimits, output_budget, plan_calls, split_tokens
from batching.retry import RetryPolicy, backoff_delay
from batching.tokens import estimate_tokens
from batching.types import COMPLETE, InferenceRequest, InferenceResult, ModelCall, ModelCallError, ModelReply

#: Receives a streamed request's text chunks: (request id, attempt number, text).
DeltaSink = Callable[[str, int, str], None]

#: Extra output tokens granted to a packed call for its JSON framing, per item.
PACKED_FRAMING_OUTPUT_TOKENS = 24

#: Non-retryable failures a split cannot confine: every call fails so whatever it carries (a
#: bad key, an unknown model), or the failure is not understood (an SDK or transport surprise).
UNSPLIT_ERRORS = frozenset({"model_auth_failed", "model_not_found", "model_error"})


@dataclass(frozen=True)
class _CallOutcome:
    reply: ModelReply | None
    error: ModelCallError | None
    attempts: int
    sent_after_s: float
    duration_s: float


class BatchInferenceEngine:
    """Groups, packs, calls, retries and splits answers back, one result per request.

    A batch is a contract: exactly one result per request, in input order, and a failure
    is confined to the items it concerns (a packed call's missing or untrustworthy answers
    are answered again alone: ``batching.packed_prompt.read_answers``; what a cut answer did
    not reach is packed again; a packed call refused for what it carries is split until only
    the items that cause it fail; a call that keeps failing fails only its own items).
    """

    def __init__(
        self,
        client: ModelClient,
        limits: PackingLimits,
        retry: RetryPolicy,
        max_concurrent_calls: int,
        *,
        pacer: CallPacer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._limits = limits
        self._retry = retry
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self._pacer = pacer or CallPacer(0)
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock

    async def run(
        self, requests: Sequence[InferenceRequest], on_delta: DeltaSink | None = None
    ) -> list[InferenceResult]:
        """Answer every request; never raises for a model failure. Streamed requests report
        their text chunks to ``on_delta`` as they arrive."""
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("request ids in one batch must be unique")
        started = self._clock()
        plans = plan_calls(list(requests), self._limits)
        answered = await asyncio.gather(*(self._run_plan(plan, started, on_delta) for plan in plans))
        by_id = {result.id: result for results in answered for result in results}
        return [by_id[request_id] for request_id in ids]

    async def _run_plan(
        self, plan: CallPlan, started: float, on_delta: DeltaSink | None
    ) -> list[InferenceResult]:
        if not plan.packed:
            request = plan.requests[0]
            on_text = None
            if request.stream and on_delta is not None:
                on_text = functools.partial(on_delta, request.id)
            return [await self._run_single(request, started, on_text=on_text)]
        return await self._run_packed(plan, started)

    async def _run_single(
        self,
        request: InferenceRequest,
        started: float,
        prior_attempts: int = 0,
        on_text: Callable[[int, str], None] | None = None,
    ) -> InferenceResult:
        outcome = await self._call(self._single_call(request), started, on_text)
        attempts = prior_attempts + outcome.attempts
        if outcome.reply is None:
            return self._failure(request, outcome, attempts, items_in_call=1)
        return InferenceResult(
            id=request.id,
            ok=True,
            model=request.model,
            text=outcome.reply.text,
            input_tokens=outcome.reply.input_tokens,
            output_tokens=outcome.reply.output_tokens,
            items_in_call=1,
            attempts=attempts,
            call_delay_s=outcome.sent_after_s,
            model_s=outcome.duration_s,
            finish_reason=outcome.reply.finish_reason,
        )

    async def _run_packed(self, plan: CallPlan, started: float) -> list[InferenceResult]:
        answered = await self._answer_packed(plan.requests, started, prior_attempts=0)
        results = {result.id: result for result in answered}
        # A cut answer hides entries read_answers never saw, so "one text for different
        # questions" is checked again over every call that answered this plan.
        shared = _shared_packed_texts(plan.requests, results)
        again = [r for r in plan.requests if r.id in shared]
        retried = await asyncio.gather(*(self._run_single(r, started, results[r.id].attempts) for r in again))
        results.update((result.id, result) for result in retried)
        return [results[r.id] for r in plan.requests]

    async def _answer_packed(
        self, requests: Sequence[InferenceRequest], started: float, prior_attempts: int
    ) -> list[InferenceResult]:
        """Answer ``requests`` in one packed call (one alone in a plain call), confining what
        goes wrong to the items it concerns.

        A call refused for what it carries (``_splits``) is split in halves, each answered the
        same way, down to the items that cause it: one such item among 32 costs 2 x 5 calls
        more. Suspect entries are answered again alone; items an output cut short never reached
        are packed again, in calls of at most as many items as it did answer (one: alone).
        ``prior_attempts``: calls these requests were already part of.
        """
        if len(requests) == 1:
            return [await self._run_single(requests[0], started, prior_attempts)]
        by_item = dict(zip(new_item_ids(len(requests)), requests, strict=True))
        outcome = await self._call(self._packed_call(by_item), started)
        attempts = prior_attempts + outcome.attempts
        if outcome.reply is None:
            if outcome.error is not None and _splits(outcome.error):
                half = (len(requests) + 1) // 2
                halves = await asyncio.gather(
                    self._answer_packed(requests[:half], started, attempts),
                    self._answer_packed(requests[half:], started, attempts),
                )
                return [result for results in halves for result in results]
            return [self._failure(r, outcome, attempts, len(requests)) for r in requests]

        reply = outcome.reply
        answers = read_answers(reply.text, {item: _fingerprint(r) for item, r in by_item.items()})
        found = [(item, req) for item, req in by_item.items() if item in answers.trusted]
        # An entry read whole from a cut output ended by itself: the cut is not its finish.
        cut_short = answers.entries_read > 0 and reply.finish_reason == "MAX_TOKENS"
        finish = COMPLETE if cut_short else reply.finish_reason
        input_shares = split_tokens(reply.input_tokens, [estimate_tokens(r.prompt) for _, r in found])
        output_shares = split_tokens(
            reply.output_tokens, [estimate_tokens(answers.trusted[item]) for item, _ in found]
        )
        results = [
            InferenceResult(
                id=req.id,
                ok=True,
                model=req.model,
                text=answers.trusted[item],
                input_tokens=input_shares[n],
                output_tokens=output_shares[n],
                items_in_call=len(requests),
                attempts=attempts,
                call_delay_s=outcome.sent_after_s,
                model_s=outcome.duration_s,
                finish_reason=finish,
            )
            for n, (item, req) in enumerate(found)
        ]
        alone = [[req] for item, req in by_item.items() if item in answers.suspect]
        cut = [req for item, req in by_item.items() if item in answers.cut]
        again = alone + _chunks(cut, answers.entries_read)
        rerun = await asyncio.gather(*(self._answer_packed(group, started, attempts) for group in again))
        return results + [result for group_results in rerun for result in group_results]

    def _single_call(self, request: InferenceRequest) -> ModelCall:
        parts: tuple[str, ...] = (request.prompt,)
        if request.context:
            context = json.dumps(request.context, ensure_ascii=False, sort_keys=True)
            parts = (f"Context (JSON):\n{context}", request.prompt)
        generation = dict(request.generation)
        generation["max_output_tokens"] = output_budget(request, self._limits)
        return ModelCall(
            model=request.model,
            parts=parts,
            system=request.system,
            generation=generation,
            history=request.history,
        )

    def _packed_call(self, by_item: dict[str, InferenceRequest]) -> ModelCall:
        first = next(iter(by_item.values()))
        items = []
        for item_id, request in by_item.items():
            item: dict[str, object] = {"id": item_id, "prompt": request.prompt}
            if request.context:
                item["context"] = request.context
            items.append(item)
        budget = sum(output_budget(r, self._limits) + PACKED_FRAMING_OUTPUT_TOKENS for r in by_item.values())
        generation = dict(first.generation)
        generation["max_output_tokens"] = min(budget, self._limits.max_output_tokens_per_call)
        return ModelCall(
            model=first.model,
            parts=(render_items(items),),
            system=first.system,
            generation=generation,
            response_schema=answer_schema(list(by_item)),
        )

    async def _call(
        self, call: ModelCall, started: float, on_text: Callable[[int, str], None] | None = None
    ) -> _CallOutcome:
        """Make one call, retrying 429/5xx/timeouts with backoff, within the concurrency slots
        and at the pace of the RPM quota (every attempt takes a turn). With ``on_text`` the
        call streams, and each chunk is reported with its attempt number."""
        attempt = 0
        while True:
            attempt += 1
            turn_in = self._pacer.reserve(self._clock())
            if turn_in > 0:
                await self._sleep(turn_in)
            async with self._slots:
                sent = self._clock()
                try:
                    if on_text is None:
                        reply = await self._client.generate(call)
                    else:
                        reply = await self._client.generate_stream(call, functools.partial(on_text, attempt))
                except ModelCallError as exc:
                    error = exc
                except Exception as exc:  # an SDK or transport surprise: give up on this call only
                    error = ModelCallError("model_error", f"{type(exc).__name__}: {exc}")
                else:
                    return _CallOutcome(reply, None, attempt, sent - started, self._clock() - sent)
            if not error.retryable or attempt >= self._retry.attempts:
                return _CallOutcome(None, error, attempt, sent - started, self._clock() - sent)
            await self._sleep(backoff_delay(attempt, self._retry, error.retry_after_s, self._jitter()))

    @staticmethod
    def _failure(
        request: InferenceRequest, outcome: _CallOutcome, attempts: int, items_in_call: int
    ) -> InferenceResult:
        error = outcome.error or ModelCallError("model_error", "no answer")
        status = f" (HTTP {error.status})" if error.status else ""
        return InferenceResult(
            id=request.id,
            ok=False,
            model=request.model,
            error_code=error.code,
            error_message=f"Gemini call failed after {attempts} attempt(s){status}: {error.message}",
            items_in_call=items_in_call,
            attempts=attempts,
            call_delay_s=outcome.sent_after_s,
            model_s=outcome.duration_s,
        )


def _splits(error: ModelCallError) -> bool:
    """True when a packed call that failed so is split: the refusal may be one item's doing
    (a blocked prompt, a 400, an empty answer). Retryable failures that outlasted their attempts
    are the model's state, and ``UNSPLIT_ERRORS`` are no item's: splitting would only multiply
    calls that fail."""
    return not error.retryable and error.code not in UNSPLIT_ERRORS


def _chunks(requests: list[InferenceRequest], room: int) -> list[list[InferenceRequest]]:
    """``requests`` in as few groups of at most ``room`` (at least 1) as possible, of even sizes."""
    if not requests:
        return []
    count = -(-len(requests) // max(1, room))
    bounds = [len(requests) * n // count for n in range(count + 1)]
    return [requests[bounds[n] : bounds[n + 1]] for n in range(count)]


def _shared_packed_texts(
    requests: Sequence[InferenceRequest], results: dict[str, InferenceResult]
) -> set[str]:
    """Ids of answers taken from a packed call whose text a different question also got."""
    askers: dict[str, set[str]] = {}
    for request in requests:
        text = results[request.id].text
        if text is not None:
            askers.setdefault(text, set()).add(_fingerprint(request))
    return {
        request.id
        for request in requests
        if (result := results[request.id]).ok
        and result.items_in_call > 1
        and len(askers[result.text or ""]) > 1
    }


def _fingerprint(request: InferenceRequest) -> str:
    """What an item asks, as packed: items with equal fingerprints may get the same answer."""
    return json.dumps([request.prompt, request.context], sort_keys=True, ensure_ascii=False)
