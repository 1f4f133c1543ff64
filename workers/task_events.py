"""Celery task events for the requests celery-batches buffers, so Flower can show each one.

celery-batches buffers a message instead of running it, and sends none of the ``task-*``
events Celery's own strategy and Request send, so Flower never hears of our requests.
These functions build those events with the fields Flower's state
(``celery.events.state.Task``) reads, and publish a batch's worth as one message. In
place of arguments and answers they carry summaries made of lengths, validated
identifiers and error codes: prompt, system text, context, answers and keys never leave
the worker in an event.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from batchgate.taskstore import FAILED, QUEUED, SUCCEEDED, Outcome
from batching.types import STRATEGIES

#: The event group that ``-E`` (or Flower's ``enable_events`` broadcast) switches on.
TASK_GROUP = "task"
#: What a request looks like in an event when its body cannot be read.
UNREADABLE = "unreadable request"
#: Result of a request this batch did not run: an earlier delivery answered it, or it expired.
SKIPPED = "skipped: already finished or expired"
#: Longest error text put in a ``task-failed`` event.
MAX_ERROR_CHARS = 200

# The API's model-name pattern; a name that does not match (the message crossed a broker)
# is shown as "?" rather than echoed.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}")


class TaskEvent(NamedTuple):
    """One event to send: its type (``task-started``…) and its fields (``uuid`` first)."""

    type: str
    fields: dict[str, Any]


def task_events_on(dispatcher: Any) -> bool:
    """Whether ``dispatcher`` sends task events now (``-E``, or enabled later by remote control)."""
    if dispatcher is None or not dispatcher.enabled:
        return False
    groups = dispatcher.groups
    return not groups or TASK_GROUP in groups


def describe_kwargs(kwargs: Any) -> str:
    """A safe, short view of an ``infer`` message's kwargs, e.g. ``prompt_chars=57, model=…``."""
    body = kwargs.get("request") if isinstance(kwargs, Mapping) else None
    if not isinstance(body, Mapping):
        return UNREADABLE
    prompt = body.get("prompt")
    parts = [f"prompt_chars={len(prompt) if isinstance(prompt, str) else '?'}"]
    system = body.get("system")
    if system:
        parts.append(f"system_chars={len(system) if isinstance(system, str) else '?'}")
    if body.get("context") is not None:
        parts.append("context=yes")
    parts.append(f"model={_shown(body.get('model'), _is_model_name)}")
    parts.append(f"strategy={_shown(body.get('strategy'), STRATEGIES.__contains__)}")
    return ", ".join(parts)


def _is_model_name(value: Any) -> bool:
    return isinstance(value, str) and _MODEL_NAME.fullmatch(value) is not None


def _shown(value: Any, valid: Callable[[Any], bool]) -> str:
    """``value`` if it is a known-safe identifier, ``default`` if unset, else ``?``."""
    if value is None:
        return "default"
    return str(value) if valid(value) else "?"


def received(request: Any, arrived_at: float | None = None) -> TaskEvent:
    """``task-received`` for a buffered celery ``Request``, stamped with its arrival time.

    The message's own ``argsrepr``/``kwargsrepr`` are not used: they are the publisher's
    (``batchgate.broker.summary``), and the arguments are described here the same way for every
    sender.
    """
    eta, expires = request.eta, request.expires
    fields: dict[str, Any] = {
        "uuid": request.id,
        "name": request.name,
        "args": f"<{len(request.args)} args>" if request.args else "()",  # ours has none
        "kwargs": describe_kwargs(request.kwargs),
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "retries": (request.request_dict or {}).get("retries") or 0,
        "eta": eta.isoformat() if eta else None,
        "expires": expires.isoformat() if expires else None,
    }
    if arrived_at is not None:
        fields["timestamp"] = arrived_at
    return TaskEvent("task-received", fields)


def started(task_ids: Iterable[str], now: float | None = None) -> list[TaskEvent]:
    """``task-started`` for each request of a batch beginning now (every event carries hostname and pid)."""
    stamp = time.time() if now is None else now
    return [TaskEvent("task-started", {"uuid": t, "timestamp": stamp}) for t in dict.fromkeys(task_ids)]


def finished(
    task_ids: Iterable[str], outcomes: Sequence[Outcome], runtime: float, now: float | None = None
) -> list[TaskEvent]:
    """``task-succeeded``/``task-failed`` for each request of a batch that took ``runtime`` seconds.

    A request without an outcome was not run by this batch (already answered or expired):
    it succeeded with nothing to do, so Flower does not show it running for ever.
    """
    stamp = time.time() if now is None else now
    by_id = {o.task_id: o for o in outcomes}
    events = []
    for task_id in dict.fromkeys(task_ids):
        outcome = by_id.get(task_id)
        fields: dict[str, Any] = {"uuid": task_id, "timestamp": stamp}
        if outcome is not None and outcome.status == QUEUED:  # parked until a quota resets
            fields.update(exception=describe_error(outcome.error), traceback="")
            events.append(TaskEvent("task-retried", fields))
        elif outcome is not None and outcome.status == FAILED:
            # runtime too (Celery sends none on failure): how long the retries took shows.
            fields.update(exception=describe_error(outcome.error), traceback="", runtime=runtime)
            events.append(TaskEvent("task-failed", fields))
        else:
            result = SKIPPED if outcome is None else describe_result(outcome)
            fields.update(result=result, runtime=runtime)
            events.append(TaskEvent("task-succeeded", fields))
    return events


def crashed(task_ids: Iterable[str], exc: BaseException) -> list[TaskEvent]:
    """``task-failed`` for every request of a batch whose function raised (its type only: no message)."""
    stamp = time.time()
    exception = f"internal_error: {type(exc).__name__}"
    return [
        TaskEvent("task-failed", {"uuid": t, "exception": exception, "traceback": "", "timestamp": stamp})
        for t in dict.fromkeys(task_ids)
    ]


def describe_result(outcome: Outcome) -> str:
    """A short summary of a stored result, e.g. ``ok 57 chars``: never the answer itself."""
    if outcome.status != SUCCEEDED:
        return outcome.status
    text = (outcome.result or {}).get("text")
    return f"ok {len(text)} chars" if isinstance(text, str) else "ok"


def describe_error(error: Mapping[str, Any] | None) -> str:
    """``code: message`` of a stored error, cut to ``MAX_ERROR_CHARS``.

    The messages are the worker's own (HTTP status, attempts and the model API's reason),
    not request text; the cut keeps an unexpectedly long one from flooding Flower.
    """
    error = error or {}
    code, message = error.get("code") or "error", error.get("message")
    text = f"{code}: {message}" if message else str(code)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def publish(app: Any, hostname: str, events: Sequence[TaskEvent]) -> None:
    """Send ``events`` as one ``task.multi`` message, from any thread.

    Each call builds its own EventDispatcher on a producer taken from the app's pool
    (thread-safe: a producer is one caller's until it is given back), buffers the events
    in it and flushes them as one message: one PUBLISH however many events. Celery's
    shared Lamport clock is locked. Raises what the publish raises: the caller decides.
    """
    if not events:
        return
    with app.producer_pool.acquire(block=True) as producer:
        dispatcher = app.events.Dispatcher(
            producer.connection,
            hostname=hostname,
            channel=producer.channel,
            buffer_while_offline=False,
            buffer_group=[TASK_GROUP],
            buffer_limit=len(events) + 1,
        )
        try:
            for event in events:
                dispatcher.send(event.type, **event.fields)
            dispatcher.flush(errors=False)
        finally:
            dispatcher.close()
