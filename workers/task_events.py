"""Celery task events for the requests celery-batches buffers, so Flower can show each one.

celery-batches buffers a message instead of running it, and sends none of the ``task-*``
events Celery's own strategy and Request send, so Flower never hears of our requests.
These functions build those events with the fields Flower's state
(``celery.events.state.Task``) reads. In place of the arguments they carry a summary made
only of lengths and validated identifiers: prompt, system text, context and keys never
leave the worker in an event. Events are telemetry: nothing here may fail a request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from batchgate.taskstore import FAILED, SUCCEEDED, Outcome
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


def received(headers: Mapping[str, Any], payload: Any) -> TaskEvent | None:
    """``task-received`` for a protocol-2 message (None if it has no id).

    ``payload`` is the decoded ``(args, kwargs, embed)`` body; the message's own
    ``argsrepr``/``kwargsrepr`` headers are never used: the publisher's repr holds the prompt.
    """
    task_id = headers.get("id")
    if not task_id:
        return None
    readable = isinstance(payload, list | tuple) and len(payload) >= 2
    args, kwargs = (payload[0], payload[1]) if readable else ((), None)
    return TaskEvent(
        "task-received",
        {
            "uuid": task_id,
            "name": headers.get("task"),
            "args": f"<{len(args)} args>" if args else "()",  # ours has none; never shown
            "kwargs": describe_kwargs(kwargs),
            "root_id": headers.get("root_id"),
            "parent_id": headers.get("parent_id"),
            "retries": headers.get("retries") or 0,
            "eta": headers.get("eta"),
            "expires": headers.get("expires"),
        },
    )


def started(task_ids: Iterable[str], now: float | None = None) -> list[TaskEvent]:
    """``task-started`` for each request of a batch that begins now (hostname and pid come with every event)."""
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
        if outcome is not None and outcome.status == FAILED:
            fields.update(exception=describe_error(outcome.error), traceback="")
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

    The messages are the worker's and the model API's own (status, attempts, reason) and
    carry no request text; the cut keeps an unexpectedly long one from flooding Flower.
    """
    error = error or {}
    code, message = error.get("code") or "error", error.get("message")
    text = f"{code}: {message}" if message else str(code)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def send(dispatcher: Any, events: Iterable[TaskEvent]) -> None:
    """Send ``events`` with ``dispatcher``; call it only from the thread that owns the dispatcher."""
    for event in events:
        dispatcher.send(event.type, **event.fields)
