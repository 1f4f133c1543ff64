"""Submitting a task, apart from HTTP: admission, idempotency, the response cache, a session's
turn, and the record and message, each undone if the submission does not go through.

``submit_task`` needs no Flask request: what the HTTP request says besides its body comes in
a ``SubmitContext``, and authentication with admission as an ``Admit`` callable (the views
pass the edge's, which reads the key from the request's headers).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.admission import Decision, Submission
from api.budget_check import refuse_over_budget
from api.edge import Caller
from api.errors import ApiError
from api.idempotency import TAKEOVER_GRACE_S, Claim
from api.schemas import TaskRequest
from api.services import Services
from api.user_preferences import with_preferences
from batchgate.broker_message import QueuedMessage
from batchgate.keys import bulk_pending
from batchgate.metrics_store import RequestRecord
from batchgate.response_cache import cache_key, is_time_sensitive
from batchgate.sessions import SessionUnreadable
from batchgate.taskstore import QUEUED, TERMINAL

#: How often a retry looks for the record of an attempt still writing it.
CLAIM_POLL_S = 0.02

#: Authenticates the caller and admits a submission (429/503 refusals as ApiErrors).
Admit = Callable[[Submission], tuple[Caller, Decision]]


@dataclass(frozen=True)
class SubmitContext:
    """What a submission's request says besides its body."""

    #: The client's ``Idempotency-Key`` header ("" when none).
    idempotency_key: str = ""
    #: The request's id (``X-Request-ID``), kept in the task's record.
    request_id: str | None = None
    #: For the drop-ins: identical bodies of one key in flight join one task under this scope.
    collapse: str = ""
    #: The owner the key sent names (its hash; "" when auth is off), for a retry refused at
    #: its tenant's cap while its original is one of the tasks in flight.
    key_owner: str = ""
    #: ``time.perf_counter()`` when the request arrived (a cache hit's end-to-end time).
    started: float = field(default_factory=time.perf_counter)


def submit_task(
    svc: Services, sent: TaskRequest, ctx: SubmitContext, admit: Admit
) -> tuple[str, dict[str, Any]]:
    """Admit ``sent`` (``admit``: authentication and admission, in one round trip with the
    cache lookup and a slot of the tenant's tasks in flight), then answer it from the
    idempotency record or the cache, or enqueue it: the task's id and its record as the
    client sees it. Refusals are ApiErrors; nothing of a refused submission is left behind."""
    # The body as sent: a retry is the same request even if the user's preferences changed.
    body_hash = hashlib.sha256(json.dumps(sent.model_dump(), sort_keys=True).encode()).hexdigest()
    idempotency = _idempotency(svc, ctx, body_hash)
    task = with_preferences(svc, sent)
    message = task.to_message()
    message.setdefault("model", svc.settings.gemini.model)
    digest = _cache_digest(svc, task, message)
    task_id = secrets.token_hex(16)
    try:
        caller, decision = admit(Submission(task_id, digest))
    except ApiError as refused:
        retried = _retry_at_cap(svc, refused, idempotency, body_hash, ctx.key_owner)
        if retried is None:
            raise
        return retried
    owner, tenant = caller.owner or "", caller.tenant
    message["tenant"] = tenant
    slot: str | None = task_id if decision.reserved else None  # the in-flight slot this holds
    claimed = done = False
    try:
        refuse_over_budget(svc, tenant, owner, task)
        if idempotency.key:
            found = _claim(svc, owner, idempotency, body_hash, task_id)
            if isinstance(found, tuple):
                return found
            claimed = True
            if found != task_id:  # the first attempt died before its record: do its work
                if slot is not None:
                    svc.admission.move(tenant, slot, found)
                    slot = found
                task_id = found

        submitted_at = time.time()
        if task.session_id:
            message["session_seq"] = _claim_turn(svc, tenant, task.session_id, submitted_at)
        cached = svc.cache.decode(decision.read_value) if digest is not None else None
        if cached is not None:
            if not svc.store.create_cached(
                task_id, message, submitted_at, caller.owner, cached, ctx.request_id, tenant
            ):
                slot, claimed = None, False  # another attempt made this task: it is theirs
                return _existing(svc, task_id)
            done = True
            svc.usage.count_cache_hit(tenant, owner, str(message["model"]), submitted_at)
            elapsed_ms = (time.perf_counter() - ctx.started) * 1000
            svc.metrics.record([RequestRecord("cached", submitted_at, end_to_end_ms=elapsed_ms)])
            body = {"status": "succeeded", "result": cached, "cached": True, "submitted_at": submitted_at}
            return task_id, {**body, "request_id": ctx.request_id}
        if digest is not None:
            message["cache_key"] = svc.cache.record_key(tenant, digest)
        if not _enqueue(svc, task_id, message, submitted_at, caller, ctx.request_id):
            slot, claimed = None, False  # another attempt made this task: it is theirs
            return _existing(svc, task_id)
        done = True
        if idempotency.key:
            svc.idempotency.mark_published(owner, idempotency.key, task_id, body_hash)
        return task_id, {"status": "queued", "queue_depth": decision.queue_depth + 1}
    finally:
        if not done and slot is not None:
            svc.admission.release(tenant, slot)
        if not done and claimed:
            svc.idempotency.release(owner, idempotency.key)


@dataclass(frozen=True)
class _Idempotency:
    """The key a submission is deduplicated by: the client's ``Idempotency-Key``, or for a
    drop-in request without one, its body (``implicit``: only while its task is in flight)."""

    key: str = ""
    implicit: bool = False
    ttl_s: int | None = None


def _idempotency(svc: Services, ctx: SubmitContext, body_hash: str) -> _Idempotency:
    sent = ctx.idempotency_key.strip()
    collapse = ctx.collapse
    if len(sent) > 255:
        raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key: at most 255 characters")
    if sent:
        return _Idempotency(sent)
    if collapse and svc.settings.edge.dropin_collapse_s > 0:
        return _Idempotency(
            f"{collapse} {body_hash}", implicit=True, ttl_s=svc.settings.edge.dropin_collapse_s
        )
    return _Idempotency()


def _claim(
    svc: Services, owner: str, idempotency: _Idempotency, body_hash: str, task_id: str
) -> str | tuple[str, dict[str, Any]]:
    """Bind the key to ``task_id``: the id the submission goes on under (its own, or that of a
    first attempt that died before its record), or the original task as a retry gets it."""
    claim = svc.idempotency.claim(owner, idempotency.key, body_hash, task_id, ttl_s=idempotency.ttl_s)
    if claim.conflict:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different body")
    if claim.new or not claim.task_id:
        return task_id
    original = _record_once_written(svc, claim.task_id, TAKEOVER_GRACE_S - claim.age_s)
    if original is None:
        return claim.task_id  # past the grace: the first attempt died before writing it
    if idempotency.implicit and original.get("status") in TERMINAL:
        # A drop-in request only joins a task in flight: a finished one was answered already.
        svc.idempotency.release(owner, idempotency.key)
        return _claim(svc, owner, idempotency, body_hash, task_id)
    return claim.task_id, _replayed(svc, claim, original, owner, idempotency.key, body_hash)


def _record_once_written(svc: Services, task_id: str, grace_s: float) -> dict[str, Any] | None:
    """The task's record; while the attempt that claimed it may still be writing it (within
    ``grace_s``), wait for it."""
    deadline = time.monotonic() + max(0.0, grace_s)
    while True:
        record = svc.store.get(task_id)
        if record is not None or time.monotonic() >= deadline:
            return record
        time.sleep(CLAIM_POLL_S)


def _existing(svc: Services, task_id: str) -> tuple[str, dict[str, Any]]:
    """The task another attempt created under this id."""
    record = svc.store.get(task_id)
    if record is None:
        raise ApiError(503, "queue_unavailable", "the task is being submitted by another attempt; retry")
    return task_id, record


def _retry_at_cap(
    svc: Services, refused: ApiError, idempotency: _Idempotency, body_hash: str, owner: str
) -> tuple[str, dict[str, Any]] | None:
    """A retry refused for its tenant's tasks in flight, while its original is one of them:
    the original, as any retry gets it (None: the refusal stands)."""
    if refused.code != "too_many_in_flight" or not idempotency.key:
        return None
    task_id = svc.idempotency.original(owner, idempotency.key, body_hash)
    original = svc.store.get(task_id) if task_id else None
    return (str(task_id), original) if original is not None else None


def _enqueue(
    svc: Services,
    task_id: str,
    message: dict[str, Any],
    submitted_at: float,
    caller: Caller,
    request_id: str | None,
) -> bool:
    """Write the record and its broker message in one Redis script where the broker allows
    it, else write the record, then publish; a message that cannot be published leaves no
    record (503). False when a record of that id exists (another attempt made it): nothing is
    sent."""
    if message.get("lane") == "bulk":  # waits for a Gemini batch job (workers.bulk_lane)
        pending = QueuedMessage(bulk_pending(svc.settings.broker.key_prefix), task_id)
        deadline = submitted_at + svc.settings.gemini.bulk_deadline_s
        return svc.store.create(
            task_id, message, submitted_at, caller.owner, request_id, caller.tenant, pending, deadline
        )
    queued = svc.publisher.queued_message(task_id, message, submitted_at)
    if not svc.store.create(
        task_id, message, submitted_at, caller.owner, request_id, caller.tenant, message=queued
    ):
        return False
    if queued is not None:
        return True
    try:
        svc.publisher.publish(task_id, message, submitted_at)
    except Exception as exc:
        svc.store.delete(task_id, caller.tenant)
        raise ApiError(503, "queue_unavailable", "the task queue is unavailable; retry later") from exc
    return True


def _replayed(
    svc: Services, claim: Claim, original: dict[str, Any], owner: str, idempotency_key: str, body_hash: str
) -> dict[str, Any]:
    """The original task of a retried Idempotency-Key, sent again when its first attempt died
    between writing the record and publishing it: its claim is not marked published by the
    end of the grace (a message sent twice is answered once: workers claim tasks)."""
    request_sent = original.get("request")
    if claim.published or original.get("status") != QUEUED or not isinstance(request_sent, dict):
        return original
    deadline = time.monotonic() + max(0.0, TAKEOVER_GRACE_S - claim.age_s)
    while time.monotonic() < deadline:  # the first attempt may be publishing it this moment
        current = svc.idempotency.peek(owner, idempotency_key)
        if current is None or current.published:
            return original
        time.sleep(CLAIM_POLL_S)
    submitted = float(original.get("submitted_at") or time.time())
    svc.publisher.publish(str(claim.task_id), request_sent, submitted)
    svc.idempotency.mark_published(owner, idempotency_key, str(claim.task_id), body_hash)
    return original


def _claim_turn(svc: Services, tenant: str, session_id: str, now: float) -> int:
    """The task's turn number in its tenant's session; 409 when the session's state is unreadable."""
    try:
        return svc.sessions.claim_turn(tenant, session_id, now)
    except SessionUnreadable:
        raise ApiError(
            409, "session_unreadable", f"session {session_id!r} cannot be read; start a new session_id"
        ) from None


def _cache_digest(svc: Services, task: TaskRequest, message: dict[str, Any]) -> str | None:
    """The request's answer fingerprint in the response cache, or None when it must bypass it."""
    settings = svc.settings
    if not settings.edge.cache_enabled or task.cache is False or task.session_id:
        return None  # a session's answer depends on a history only the worker reads
    context_text = json.dumps(task.context, ensure_ascii=False) if task.context else ""
    history_text = " ".join(turn.text for turn in task.history or [])
    texts = (task.prompt, task.system or "", context_text, history_text)
    if is_time_sensitive(texts, settings.edge.bypass_words):
        return None
    return cache_key(message)
