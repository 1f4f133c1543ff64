"""One flushed batch: claim the records, run the engine, store every outcome.

This function never raises: celery-batches acknowledges a batch's messages even when the
batch task fails, and would leave every request PENDING for ever. Any error is written
as a failed outcome for exactly the requests it concerns.
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
from batchgate.response_cache import COMPLETE, ResponseCache
from batchgate.sessions import Landing, SessionTurn
from batchgate.taskstore import FAILED, SUCCEEDED, TERMINAL, Outcome, TaskStore
from batching.types import STRATEGIES, InferenceRequest, InferenceResult
from workers.conversation_rounds import ConversationRounds, Round

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


def process_batch(
    deliveries: Sequence[Delivery],
    store: TaskStore,
    run_engine: RunEngine,
    default_model: str,
    cache: ResponseCache | None = None,
    metrics: InferenceMetricsCollector | None = None,
    conversations: ConversationRounds | None = None,
) -> list[Outcome]:
    """Answer a batch of deliveries, store one outcome per request, fill the cache, record metrics.

    Conversation turns are answered in order, in rounds (``conversations``), and land in
    their session with their answer. Returns one outcome per request it ran (none for one
    already answered or expired).
    """
    picked_at = time.time()
    try:
        return _process(
            deliveries, store, run_engine, default_model, picked_at, cache, metrics, conversations
        )
    except (redis.ConnectionError, redis.TimeoutError):
        # Redis stayed unreachable through the client's retries: nothing can be stored now.
        # The messages come back (visibility timeout) or the orphan sweeper re-enqueues them.
        log.exception("batch of %d could not reach Redis; its requests will be redelivered", len(deliveries))
        raise
    except Exception:
        log.exception("batch of %d failed; marking its requests failed", len(deliveries))
        ids = list(dict.fromkeys(d.task_id for d in deliveries))
        error = {"code": "internal_error", "message": "the batch could not be processed; please resubmit"}
        failed = [Outcome(t, FAILED, None, error, {}) for t in ids]
        try:
            store.finish(failed, time.time())
        except Exception:
            log.exception("could not mark %d requests failed; they will be redelivered", len(ids))
            raise
        return failed


def _process(
    deliveries: Sequence[Delivery],
    store: TaskStore,
    run_engine: RunEngine,
    default_model: str,
    picked_at: float,
    cache: ResponseCache | None,
    metrics: InferenceMetricsCollector | None,
    conversations: ConversationRounds | None,
) -> list[Outcome]:
    unique = list({d.task_id: d for d in deliveries}.values())  # a redelivery may share a batch
    statuses = store.statuses([d.task_id for d in unique])
    # Finished records were answered by an earlier delivery; missing ones expired.
    live = [
        d for d, status in zip(unique, statuses, strict=True) if status is not None and status not in TERMINAL
    ]
    if not live:
        return []

    requests: list[InferenceRequest] = []
    outcomes: list[Outcome] = []
    for delivery in live:
        try:
            requests.append(to_inference_request(delivery, default_model))
        except (KeyError, TypeError, ValueError) as exc:
            error = {"code": "invalid_message", "message": f"malformed task message: {exc}"}
            outcomes.append(Outcome(delivery.task_id, FAILED, None, error, {}))

    store.mark_running([r.id for r in requests], picked_at, len(requests))
    by_id = {d.task_id: d for d in live}
    turns = [session_turn(by_id[r.id]) if conversations else None for r in requests]
    turn_of = {r.id: turn for r, turn in zip(requests, turns, strict=True)}
    rounds = conversations.rounds(requests, turns) if conversations else iter([Round(requests)])
    written: set[str] = set()
    landed = 0  # outcomes[:landed] are written; each round lands before the next is read
    for batch_round in rounds:
        for request in batch_round.unreadable:
            turn = turn_of[request.id]
            assert conversations is not None and turn is not None  # only conversations have rounds
            # Landed as a failed turn (nothing appended), so the next turn need not wait for it;
            # TaskStore.finish leaves keys of the wrong type alone.
            landing = conversations.sessions.landing(turn, request.id, "", None, time.time())
            outcomes.append(_unreadable(request.id, landing))
        for result in run_engine(batch_round.requests) if batch_round.requests else []:
            outcome = _outcome(result, by_id[result.id], picked_at, len(requests))
            turn = turn_of[result.id]
            if conversations is not None and turn is not None:
                answer = outcome.result["text"] if outcome.result else None
                prompt = by_id[result.id].payload["request"]["prompt"]
                landing = conversations.sessions.landing(turn, result.id, prompt, answer, time.time())
                outcome = dataclasses.replace(outcome, landing=landing)
            outcomes.append(outcome)
        written.update(store.finish(outcomes[landed:], time.time()))
        landed = len(outcomes)
    written.update(store.finish(outcomes[landed:], time.time()))
    try:
        _remember(outcomes, written, by_id, cache, metrics)
    except redis.RedisError:
        log.warning(
            "could not fill the cache or record metrics for a batch of %d", len(outcomes), exc_info=True
        )
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
        history=_history(body.get("history")),
        tenant=str(body.get("tenant") or ""),
    )


def _history(turns: Any) -> tuple[tuple[str, str], ...]:
    """A client-held conversation from a task message (validated again: it crossed a broker)."""
    if turns is None:
        return ()
    if not isinstance(turns, list):
        raise TypeError("history must be a list")
    history = []
    for turn in turns:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "model"):
            raise ValueError("history turns need a role of user or model")
        if not isinstance(turn.get("text"), str):
            raise TypeError("history turns need a text")
        history.append((str(turn["role"]), str(turn["text"])))
    return tuple(history)


def session_turn(delivery: Delivery) -> SessionTurn | None:
    """The conversation turn a task message carries, if any."""
    body = delivery.payload.get("request") or {}
    session_id, seq = body.get("session_id"), body.get("session_seq")
    if isinstance(session_id, str) and session_id and isinstance(seq, int) and seq > 0:
        return SessionTurn(session_id, seq, str(body.get("tenant") or ""))
    return None


def _outcome(result: InferenceResult, delivery: Delivery, picked_at: float, batch_size: int) -> Outcome:
    submitted_at = float(delivery.payload.get("submitted_at") or picked_at)
    received_at = delivery.received_at or picked_at
    finished_at = time.time()
    timings = {
        "queued_ms": _ms(received_at - submitted_at),
        "batch_wait_ms": _ms(picked_at - received_at + result.call_delay_s),
        "model_ms": _ms(result.model_s),
        "total_ms": _ms(finished_at - submitted_at),
        "batch_size": batch_size,
        "items_in_call": result.items_in_call,
        "attempts": result.attempts,
        "worker": WORKER_ID,
    }
    if result.ok:
        payload = {
            "text": result.text,
            "model": result.model,
            "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
            "finish_reason": result.finish_reason,
        }
        return Outcome(result.id, SUCCEEDED, payload, None, timings)
    error = {
        "code": result.error_code or "model_error",
        "message": result.error_message or "model call failed",
    }
    return Outcome(result.id, FAILED, None, error, timings)


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
