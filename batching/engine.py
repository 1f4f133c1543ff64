"""BatchInferenceEngine: answers a batch of requests with as few model calls as the limits allow."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from batching.answer_checks import entry_text, kept_calls, sendable_schema, unfit_answer, unfit_entry
from batching.cache_scope import scoped
from batching.call_costs import metered
from batching.call_pacer import CallPacer, Pacer
from batching.daily_quota import DAILY_QUOTA_EXHAUSTED
from batching.model_client import ModelClient
from batching.packed_prompt import (
    answer_schema,
    new_item_ids,
    read_answers,
    render_items,
    structured_answer_schema,
)
from batching.packing import CallPlan, PackingLimits, even_chunks, output_budget, plan_calls, split_tokens
from batching.quota import call_input_tokens
from batching.retry import RetryPolicy, backoff_delay
from batching.structured import with_answer_format
from batching.tokens import estimate_tokens
from batching.types import (
    COMPLETE,
    InferenceRequest,
    InferenceResult,
    ModelCall,
    ModelCallError,
    ModelReply,
)

#: Receives a streamed request's text chunks: (request id, attempt number, text).
DeltaSink = Callable[[str, int, str], None]

#: Extra output tokens granted to a packed call for its JSON framing, per item.
PACKED_FRAMING_OUTPUT_TOKENS = 24

#: Calls made for a request alone whose answer is not JSON valid for its schema before it fails
#: with ``invalid_structured_output`` (a model that drifted once may not drift again).
STRUCTURED_TRIES = 2

#: Non-retryable failures a split cannot confine: every call fails so whatever it carries (a
#: bad key, an unknown model), or the failure is not understood (an SDK or transport surprise).
UNSPLIT_ERRORS = frozenset({"model_auth_failed", "model_not_found", "model_error", DAILY_QUOTA_EXHAUSTED})


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
        pacer: Pacer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._limits, self._retry = client, limits, retry
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self._pacer = pacer or CallPacer(0)
        self._sleep, self._jitter, self._clock = sleep, jitter, clock

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
        call = scoped(self._single_call(request), request.tenant, self._limits)
        attempts = prior_attempts
        spent_in = spent_out = spent_cached = 0  # every call is billed, unfit answers' too
        for tries_left in reversed(range(STRUCTURED_TRIES)):
            outcome = await self._call(call, started, on_text)
            attempts += outcome.attempts
            if outcome.reply is None:
                return self._failure(request, outcome, attempts, items_in_call=1)
            reply = outcome.reply
            spent_in, spent_out = spent_in + reply.input_tokens, spent_out + reply.output_tokens
            spent_cached += reply.cached_tokens
            calls = kept_calls(reply.function_calls, request.tools)
            unfit = None if calls else unfit_answer(request, reply)
            if unfit is None:
                break
            code, why = unfit
            if reply.finish_reason == "MAX_TOKENS":  # the same limit would cut it again
                limit = call.generation.get("max_output_tokens")
                code = "structured_output_truncated"
                why = f"the answer was cut at max_output_tokens ({limit}) before it was complete: {why}"
            if tries_left == 0 or on_text is not None or code == "structured_output_truncated":
                # A relayed stream cannot be taken back.
                error = ModelCallError(code, why)
                return self._failure(request, dataclasses.replace(outcome, error=error), attempts, 1)
        return InferenceResult(
            id=request.id,
            ok=True,
            model=request.model,
            text="" if calls else reply.text,
            input_tokens=spent_in,
            output_tokens=spent_out,
            cached_input_tokens=spent_cached,
            items_in_call=1,
            attempts=attempts,
            call_delay_s=outcome.sent_after_s,
            model_s=outcome.duration_s,
            model_server_s=reply.server_s,
            finish_reason=reply.finish_reason,
            function_calls=calls,
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
        call = scoped(self._packed_call(by_item), requests[0].tenant, self._limits)
        outcome = await self._call(call, started)
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
        first = requests[0]
        answers = read_answers(
            reply.text,
            {item: _fingerprint(r) for item, r in by_item.items()},
            json_answers=first.output is not None,
        )
        unfit = {i for i, r in by_item.items() if i in answers.trusted and unfit_entry(r, answers, i)}
        found = [
            (item, req) for item, req in by_item.items() if item in answers.trusted and item not in unfit
        ]
        # An entry read whole from a cut output ended by itself: the cut is not its finish.
        cut_short = answers.entries_read > 0 and reply.finish_reason == "MAX_TOKENS"
        finish = COMPLETE if cut_short else reply.finish_reason
        weights = [estimate_tokens(r.prompt) for _, r in found]
        cached = min(reply.cached_tokens, reply.input_tokens)  # split apart: each share stays whole
        fresh_shares, cached_shares = (
            split_tokens(n, weights) for n in (reply.input_tokens - cached, cached)
        )
        output_shares = split_tokens(
            reply.output_tokens, [estimate_tokens(entry_text(answers, item)) for item, _ in found]
        )
        results = [
            InferenceResult(
                id=req.id,
                ok=True,
                model=req.model,
                text=answers.trusted[item],
                function_calls=kept_calls(answers.calls.get(item, ()), req.tools),
                input_tokens=fresh_shares[n] + cached_shares[n],
                output_tokens=output_shares[n],
                cached_input_tokens=cached_shares[n],
                items_in_call=len(requests),
                attempts=attempts,
                call_delay_s=outcome.sent_after_s,
                model_s=outcome.duration_s,
                model_server_s=reply.server_s,
                finish_reason=finish,
            )
            for n, (item, req) in enumerate(found)
        ]
        alone = [[req] for item, req in by_item.items() if item in answers.suspect or item in unfit]
        cut = [req for item, req in by_item.items() if item in answers.cut]
        again = alone + even_chunks(cut, answers.entries_read)
        rerun = await asyncio.gather(*(self._answer_packed(group, started, attempts) for group in again))
        return results + [result for group_results in rerun for result in group_results]

    def _single_call(self, request: InferenceRequest) -> ModelCall:
        parts: tuple[str, ...] = (request.prompt,)
        if request.context:
            context = json.dumps(request.context, ensure_ascii=False, sort_keys=True)
            parts = (f"Context (JSON):\n{context}", request.prompt)
        generation = dict(request.generation)
        generation["max_output_tokens"] = output_budget(request, self._limits)
        output, system = request.output, request.system
        schema = None if output is None or output.schema is None else sendable_schema(output.schema)
        if output is not None and request.tools is not None and request.tools.mode != "NONE":
            # Gemini 2.5 refuses function calling with JSON output: the schema goes in the
            # instruction, and the text answer is checked against it all the same.
            system = with_answer_format(system, schema or {"type": "object"})
            output = schema = None
        return ModelCall(
            model=request.model,
            parts=parts if request.prompt or not request.parts else parts[:-1],
            system=system,
            generation=generation,
            history=request.history,
            extra_parts=request.parts,
            tools=request.tools,
            json_output=output is not None,
            response_json_schema=schema,
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
        tools = first.tools.as_json() if first.tools is not None and first.tools.mode != "NONE" else None
        if tools is None and first.output is None:
            return ModelCall(
                model=first.model,
                parts=(render_items(items),),
                system=first.system,
                generation=generation,
                response_schema=answer_schema(list(by_item)),
            )
        answer = None if first.output is None else (first.output.schema or {"type": "object"})
        return ModelCall(
            model=first.model,
            parts=(render_items(items, tools),),
            system=first.system,
            generation=generation,
            json_output=True,
            response_json_schema=structured_answer_schema(list(by_item), answer, tools),
        )

    async def _call(
        self, call: ModelCall, started: float, on_text: Callable[[int, str], None] | None = None
    ) -> _CallOutcome:
        """Make one call, retrying 429/5xx/timeouts with backoff, within the concurrency slots
        and the model's quotas (every attempt takes a turn and its input tokens). With ``on_text`` the
        call streams, and each chunk is reported with its attempt number."""
        attempt, tokens = 0, call_input_tokens(call)
        while True:
            attempt += 1
            try:
                turn_in = self._pacer.reserve(self._clock(), call.model, tokens)
            except ModelCallError as exc:  # the model's day quota is spent: no call is made
                return _CallOutcome(None, exc, attempt, self._clock() - started, 0.0)
            if turn_in > 0:
                await self._sleep(turn_in)
            async with self._slots:
                sent = self._clock()
                try:
                    if on_text is None:
                        reply = await metered(self._client.generate(call))
                    else:
                        streaming = functools.partial(on_text, attempt)
                        reply = await metered(self._client.generate_stream(call, streaming))
                except ModelCallError as exc:
                    error = exc
                except Exception as exc:  # an SDK or transport surprise: give up on this call only
                    error = ModelCallError("model_error", f"{type(exc).__name__}: {exc}")
                else:
                    self._pacer.settle(call.model, tokens, reply.input_tokens)
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


def _shared_packed_texts(
    requests: Sequence[InferenceRequest], results: dict[str, InferenceResult]
) -> set[str]:
    """Ids of answers taken from a packed call whose text a different question also got."""
    askers: dict[str, set[str]] = {}
    for request in requests:
        result = results[request.id]
        if result.ok:
            askers.setdefault(_answered(result), set()).add(_fingerprint(request))
    return {
        request.id
        for request in requests
        if (result := results[request.id]).ok
        and result.items_in_call > 1
        and request.output is None
        and len(askers[_answered(result)]) > 1
    }


def _answered(result: InferenceResult) -> str:
    """What a result answers, for comparing across items: its text, or its calls without ids."""
    if not result.function_calls:
        return result.text or ""
    return json.dumps(
        [{k: v for k, v in c.items() if k != "id"} for c in result.function_calls], sort_keys=True
    )


def _fingerprint(request: InferenceRequest) -> str:
    """What an item asks, as packed: items with equal fingerprints may get the same answer."""
    return json.dumps([request.prompt, request.context], sort_keys=True, ensure_ascii=False)
