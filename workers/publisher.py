"""Enqueues requests for the batch workers without subscribing to their results."""

from __future__ import annotations

from typing import Any

from celery import Celery

from batchgate.settings import Settings
from workers.app import INFER_TASK


class Publisher:
    """Publishes task messages; results come back through the task store, not Celery."""

    def __init__(self, celery_app: Celery, settings: Settings) -> None:
        self._app = celery_app
        self._queue = settings.queue

    def publish(self, task_id: str, request: dict[str, Any], submitted_at: float) -> None:
        # ignore_result: Celery's Redis backend would otherwise subscribe this process to
        # every task's result channel and never read the confirmations (see PITFALLS).
        # argsrepr/kwargsrepr: Celery would otherwise ``saferepr`` the whole request into the
        # message headers (about 6 % of the API's CPU, and the prompt into every log line
        # and monitor that shows them); a short summary says enough.
        self._app.send_task(
            INFER_TASK,
            kwargs={"request": request, "submitted_at": submitted_at},
            task_id=task_id,
            queue=self._queue,
            ignore_result=True,
            argsrepr="()",
            kwargsrepr=summary(request),
        )


def summary(request: dict[str, Any]) -> str:
    """What a message's headers show of a request: its model and sizes, never its text."""
    prompt = request.get("prompt") or ""
    return f"{{model: {request.get('model', '?')}, prompt: {len(prompt)} chars}}"
