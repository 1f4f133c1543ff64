"""One flushed batch: claim the records, run the engine, store every outcome.

A delivery runs only the tasks it claims (``TaskStore.claim``): a redelivered message whose
task another live worker runs, or that is already answered, costs nothing. Any error is
written as a failed outcome for exactly the requests it concerns. The one error that cannot
be written is Redis being unreachable: answers already computed are kept and stored as soon
as Redis answers again (within ``patience_s``); past that, ``ResultsNotStored`` tells the
caller not to acknowledge the messages, so they are delivered again rather than lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from batchgate.metrics_store import InferenceMetricsCollector, RequestRecord
from batchgate.response_cache import ResponseCache
from batchgate.sessions import Landing, SessionTurn
from batchgate.taskstore import FAILED, SUCCEEDED, Holder, Outcome, TaskStore
from batchgate.usage_store import NANO, nano_usd
from batching.pricing import DEFAULT_PRICE_TABLE, PriceTable, Usage
from batching.types import COMPLETE, STRATEGIES, InferenceRequest, InferenceResult
from workers import message_parts
from workers.conversation_rounds import ConversationRounds, Round
from workers.parking import park_spent

log = logging.getLogger(__name__)

#: Which worker process answered, in every task's timings (``host:pid``).
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Delivery:
    """A request as delivered by the broker."""

    task_id: str
    payload: dict[str, Any]
    #: Wall-clock time the consumer received the message (None if unknown).
    received_at: float | None = None


RunEngine = Callable[[list[InferenceRequest]], list[InferenceResult]]

#: Longest pause between two attempts to store a batch's answers while Redis is unreachable.
STORE_RETRY_MAX_S = 5.0


class ResultsNotStored(Exception):
    """Redis stayed unreachable: the batch's outcomes could not be written; do not acknowledge."""


@dataclass(frozen=True)
class BatchContext:
    """What a batch is answered with besides its deliveries (one per worker process)."""

    store: TaskStore
    run_engine: RunEngine
    default_model: str
    holder: Holder
    cache: ResponseCache | None = None
    metrics: InferenceMetricsCollector | None = None
    conversations: ConversationRounds | None = None
    #: How long answers already computed are kept while Redis is unreachable.
    patience_s: float = 0.0
    #: Park tasks that only a spent day quota failed, until it resets (``workers.parking``),
    #: sent again by the orphan sweeper, which acts ``park_lead_s`` after a task is due.
    park_day_quota: bool = False
    park_lead_s: float = 0.0
    sleep: Callable[[float], None] = time.sleep
    #: What each model's tokens cost (a result's usage shows its cost).
    prices: PriceTable = DEFAULT_PRICE_TABLE


def process_batch(deliveries: Sequence[Delivery], ctx: BatchContext) -> list[Outcome]:
    """Answer a batch of deliveries, store one outcome per request, fill the cache, record metrics.

    Conversation turns are answered in order, in rounds (``ctx.conversations``), and land in
    their session with their answer. Returns one outcome per request it ran (none for one
    it did not claim: already answered, expired, or run by another live worker).
    """
    picked_at = time.time()
    claimed: set[str] = set()
    try:
        return _process(deliveries, ctx, picked_at, claimed)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Redis was unreachable before anything was answered (the claim): nothing to keep.
        log.warning("batch of %d could not reach Redis; its messages go back unanswered", len(deliveries))
        raise ResultsNotStored(str(exc)) from exc
    except ResultsNotStored:
        log.error("batch of %d: answers computed but not stored; its messages go back", len(deliveries))
        raise
    except Exception:
        # Only what this delivery claimed: other tasks of the batch may be running elsewhere.
        ids = [d.task_id for d in deliveries if d.task_id in claimed]
        log.exception("batch of %d failed; marking its %d claimed requests failed", len(deliveries), len(ids))
        if not ids:
            raise ResultsNotStored("the batch failed before it claimed anything") from None
        error = {"code": "internal_error", "message": "the batch could not be processed; please resubmit"}
        failed = [Outcome(t, FAILED, None, error, {}) for t in dict.fromkeys(ids)]
        try:
            _store(ctx, failed)
        except Exception:
            log.exception("could not mark %d requests failed; they will be redelivered", len(ids))
            raise ResultsNotStored("could not mark the batch failed") from None
        return failed


def _store(ctx: BatchContext, outcomes: list[Outcome]) -> list[str]:
    """Write outcomes (``TaskStore.finish``), waiting out an unreachable Redis for up to
    ``ctx.patience_s`` (the client itself retries each command for about 20 s first)."""
    started = time.monotonic()
    pause = 0.5
    while True:
        try:
            return ctx.store.finish(outcomes, time.time())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() - started >= ctx.patience_s:
                raise ResultsNotStored(str(exc)) from exc
            log.warning(
                "could not store %d answers yet (%s); trying again in %.1f s", len(outcomes), exc, pause
            )
            ctx.sleep(pause)
            pause = min(pause * 2, STORE_RETRY_MAX_S)


def _process(
    deliveries: Sequence[Delivery], ctx: BatchContext, picked_at: float, claimed: set[str]
) -> list[Outcome]:
    store, conversations = ctx.store, ctx.conversations
    unique = list({d.task_id: d for d in deliveries}.values())  # a redelivery may share a batch
    requests: list[InferenceRequest] = []
    outcomes: list[Outcome] = []
    for delivery in unique:
        try:
            requests.append(to_inference_request(delivery, ctx.default_model))
        except (KeyError, TypeError, ValueError) as exc:
            error = {"code": "invalid_message", "message": f"malformed task message: {exc}"}
            outcomes.append(Outcome(delivery.task_id, FAILED, None, error, {}))
    # Only what this delivery claims runs: not what is answered, expired, or another live
    # worker's; a malformed message is failed (once: results are written once).
    claimed |= store.claim([r.id for r in requests], ctx.holder, picked_at, len(requests))
    requests = [r for r in requests if r.id in claimed]
    if not requests:
        return _store_and_keep(ctx, outcomes)
    by_id = {d.task_id: d for d in unique}
    turns = [session_turn(by_id[r.id]) if conversations else None for r in requests]
    turn_of = {r.id: turn for r, turn in zip(requests, turns, strict=True)}
    rounds = conversations.rounds(requests, turns) if conversations else iter([Round(requests)])
    written: set[str] = set()
    landed = 0  # outcomes[:landed] are written; each round lands before the next is read
    run_engine = ctx.run_engine
    for batch_round in rounds:
        for request in batch_round.unreadable:
            turn = turn_of[request.id]
            assert conversations is not None and turn is not None  # only conversations have rounds
            # Landed as a failed turn (nothing appended), so the next turn need not wait for it;
            # TaskStore.finish leaves keys of the wrong type alone.
            landing = conversations.sessions.landing(turn, request.id, "", None, time.time())
            outcomes.append(_unreadable(request.id, landing))
        for result in run_engine(batch_round.requests) if batch_round.requests else []:
            outcome = outcome_of(result, by_id[result.id], picked_at, len(requests), ctx.prices)
            turn = turn_of[result.id]
            if conversations is not None and turn is not None:
                answer = outcome.result["text"] if outcome.result else None
                body = by_id[result.id].payload["request"]
                landing = conversations.sessions.landing(
                    turn,
                    result.id,
                    str(body.get("prompt") or ""),
                    answer,
                    time.time(),
                    user_parts=message_parts.user_parts(body),
                    model_parts=[message_parts.function_call(call) for call in result.function_calls],
                )
                outcome = dataclasses.replace(outcome, landing=landing)
            outcomes.append(outcome)
        written.update(_store(ctx, _unparked(ctx, outcomes, landed)))
        landed = len(outcomes)
    written.update(_store(ctx, _unparked(ctx, outcomes, landed)))
    try:
        _remember(outcomes, written, by_id, ctx.cache, ctx.metrics)
    except redis.RedisError:
        log.warning(
            "could not fill the cache or record metrics for a batch of %d", len(outcomes), exc_info=True
        )
    return outcomes


def _unparked(ctx: BatchContext, outcomes: list[Outcome], start: int) -> list[Outcome]:
    """The outcomes from ``start`` on to store: all, unless a spent day quota parks some."""
    if not ctx.park_day_quota:
        return outcomes[start:]
    return park_spent(ctx.store, ctx.holder.name, ctx.park_lead_s, outcomes, start)


def _store_and_keep(ctx: BatchContext, outcomes: list[Outcome]) -> list[Outcome]:
    _store(ctx, outcomes)
    return outcomes


def _unreadable(task_id: str, landing: Landing) -> Outcome:
    """The outcome of a conversation turn whose session's stored state cannot be read."""
    error = {
        "code": "session_unreadable",
        "message": "this conversation's stored state cannot be read; start a new session_id",
    }
    return Outcome(task_id, FAILED, None, error, {}, landing)


def _remember(
    outcomes: list[Outcome],
    written: set[str],
    by_id: dict[str, Delivery],
    cache: ResponseCache | None,
    metrics: InferenceMetricsCollector | None,
) -> None:
    """Best effort, after the answers are stored: cache the complete successes, record the metrics."""
    if cache is not None:
        entries = [
            (str(by_id[o.task_id].payload["request"]["cache_key"]), o.result)
            for o in outcomes
            if o.status == SUCCEEDED
            and o.result
            and o.result.get("finish_reason") == COMPLETE  # an answer cut short is never cached
            and o.task_id in written
            and by_id[o.task_id].payload["request"].get("cache_key")
        ]
        cache.put_many(entries)  # errors are never cached: only successes are listed
    if metrics is not None:
        metrics.record([_record(o) for o in outcomes if o.task_id in written])


def to_inference_request(delivery: Delivery, default_model: str) -> InferenceRequest:
    """Build the engine's request from a task message payload (validated again: it crossed a broker)."""
    body = delivery.payload["request"]
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise TypeError("prompt must be a string")
    strategy = body.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    return InferenceRequest(
        id=delivery.task_id,
        prompt=prompt,
        model=body.get("model") or default_model,
        system=body.get("system"),
        context=body.get("context"),
        generation=dict(body.get("generation") or {}),
        strategy=strategy,
        stream=body.get("stream") is True,
        history=message_parts.history(body.get("history")),
        parts=tuple(message_parts.user_parts(body)),
        tools=message_parts.tools(body),
        output=message_parts.output(body),
        tenant=str(body.get("tenant") or ""),
    )


def session_turn(delivery: Delivery) -> SessionTurn | None:
    """The conversation turn a task message carries, if any."""
    body = delivery.payload.get("request") or {}
    session_id, seq = body.get("session_id"), body.get("session_seq")
    if isinstance(session_id, str) and session_id and isinstance(seq, int) and seq > 0:
        return SessionTurn(session_id, seq, str(body.get("tenant") or ""))
    return None


def outcome_of(
    result: InferenceResult,
    delivery: Delivery,
    picked_at: float,
    batch_size: int,
    prices: PriceTable = DEFAULT_PRICE_TABLE,
    batch_api: bool = False,
) -> Outcome:
    """The outcome a request's result is stored as: its answer or error, its timings, and
    its usage with what it cost (at the Batch API's price when ``batch_api``)."""
    submitted_at = float(delivery.payload.get("submitted_at") or picked_at)
    received_at = delivery.received_at or picked_at
    finished_at = time.time()
    timings = {
        "queued_ms": _ms(received_at - submitted_at),
        "batch_wait_ms": _ms(picked_at - received_at + result.call_delay_s),
        "model_ms": _ms(result.model_s),
        **({"model_server_ms": _ms(result.model_server_s)} if result.model_server_s is not None else {}),
        "total_ms": _ms(finished_at - submitted_at),
        "batch_size": batch_size,
        "items_in_call": result.items_in_call,
        "attempts": result.attempts,
        "worker": WORKER_ID,
    }
    if result.ok:
        payload: dict[str, Any] = {
            "text": result.text,
            "model": result.model,
            "usage": usage_of(result, prices, batch_api),
            "finish_reason": result.finish_reason,
        }
        if result.function_calls:
            payload["tool_calls"] = [dict(call) for call in result.function_calls]
        return Outcome(result.id, SUCCEEDED, payload, None, timings, model=result.model)
    error = {
        "code": result.error_code or "model_error",
        "message": result.error_message or "model call failed",
    }
    return Outcome(result.id, FAILED, None, error, timings, model=result.model)


def usage_of(result: InferenceResult, prices: PriceTable, batch_api: bool) -> dict[str, Any]:
    """A result's share of its call's tokens and what that share cost, in nano-dollars as
    usage is counted (``batchgate.usage_store``)."""
    tokens = Usage(result.input_tokens, result.output_tokens, result.cached_input_tokens)
    cost = nano_usd(prices.cost_usd(result.model, tokens, batch=batch_api)) / NANO
    return {
        "input_tokens": tokens.input_tokens,
        "output_tokens": tokens.output_tokens,
        "cached_input_tokens": tokens.cached_input_tokens,
        "cost_usd": cost,
        "pricing": "batch" if batch_api else "standard",
    }


def _record(outcome: Outcome) -> RequestRecord:
    timings = outcome.timings
    usage = (outcome.result or {}).get("usage", {})
    return RequestRecord(
        outcome=outcome.status,
        finished_at=time.time(),
        end_to_end_ms=timings.get("total_ms"),
        queued_ms=timings.get("queued_ms"),
        batch_wait_ms=timings.get("batch_wait_ms"),
        model_ms=timings.get("model_ms"),
        batch_size=timings.get("batch_size"),
        items_in_call=timings.get("items_in_call"),
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
    )


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000, 3)
