"""The synchronous client."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx

from batchgate_client import _core
from batchgate_client._retry import DEFAULT_BACKOFF, Backoff
from batchgate_client._sse import EventParser
from batchgate_client._types import BatchgateError, Budget, Event, Task, Unavailable, UsageReport


class Client:
    """batchgate's native API: ``submit``, ``get``, ``wait``, ``run`` (submit and wait),
    ``events`` (server-sent, resumed after a dropped connection), ``usage`` (a typed
    ``UsageReport``), ``budgets``.

    Every submission carries an ``Idempotency-Key``; 429 (not a spent budget), 502, 503,
    504 and connection failures are retried with backoff that honours ``Retry-After``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 60.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=_core.headers(api_key),
            timeout=timeout_s,
            transport=transport,
            verify=verify,
        )
        self._backoff = backoff

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(self, prompt: str | None = None, *, idempotency_key: str | None = None, **fields: Any) -> Task:
        """Enqueue a task (``fields``: any of the task's other fields: ``context``, ``lane``,
        ``stream``, ``session_id``, ``tools``...); finished already if the cache answered it."""
        return _core.task_of(self._send(_core.submission("/api/v1/tasks", prompt, fields, idempotency_key)))

    def get(self, task_id: str) -> Task:
        return _core.task_of(self._send(_core.Call("GET", f"/api/v1/tasks/{task_id}")), task_id)

    def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        """Long-poll until the task is finished (or ``timeout_s`` passed: the task as it stands)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = (
                _core.LONG_POLL_S if deadline is None else min(_core.LONG_POLL_S, deadline - time.monotonic())
            )
            call = _core.Call("GET", f"/api/v1/tasks/{task_id}", params={"wait": max(0.0, left)})
            task = _core.task_of(self._send(call), task_id)
            if task.done or (deadline is not None and time.monotonic() >= deadline):
                return task

    def run(self, prompt: str | None = None, *, timeout_s: float | None = None, **fields: Any) -> Task:
        """Submit and wait for the finished task."""
        task = self.submit(prompt, **fields)
        return task if task.done else self.wait(task.id, timeout_s)

    def events(self, task_id: str, last_event_id: int = 0) -> Iterator[Event]:
        """The task's events to the final one; a dropped stream is resumed after the last event seen."""
        attempt = 0
        while True:
            try:
                with self._http.stream(
                    "GET",
                    f"/api/v1/tasks/{task_id}/events",
                    headers={"Last-Event-ID": str(last_event_id), "Accept": "text/event-stream"},
                    timeout=httpx.Timeout(connect=10.0, read=None, write=10.0, pool=10.0),
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _core.failure(response) or Unavailable(response.status_code, "http_error", "")
                    parser = EventParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        attempt, last_event_id = 0, event.id
                        yield event
                        if event.final:
                            return
            except (httpx.TransportError, Unavailable) as exc:
                attempt += 1
                if attempt >= self._backoff.attempts:
                    raise _unavailable(exc) from exc
                time.sleep(self._backoff.delay_s(attempt, getattr(exc, "retry_after_s", None)))

    def usage(
        self, from_: str | None = None, to: str | None = None, group_by: str | None = None
    ) -> UsageReport:
        """The tenant's usage and budgets (``from_``/``to``: ``YYYY-MM-DD``, default this month so
        far; ``group_by``: day, key or model, one ``UsageGroup`` each in ``groups``)."""
        return _core.usage_of(self._send(_core.usage_call(from_, to, group_by)))

    def budgets(self) -> tuple[Budget, ...]:
        """The tenant's budgets and the caller's key's own, each with its use this month."""
        return _core.usage_of(self._send(_core.usage_call())).budgets

    def _send(self, call: _core.Call) -> httpx.Response:
        for attempt in range(1, self._backoff.attempts + 1):
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params or None, json=call.body, headers=call.headers
                )
            except httpx.TransportError as exc:
                if attempt == self._backoff.attempts:
                    raise _unavailable(exc) from exc
                time.sleep(self._backoff.delay_s(attempt, None))
                continue
            error = _core.failure(response)
            if error is None:
                return response
            if not _core.worth_retrying(error) or attempt == self._backoff.attempts:
                raise error
            time.sleep(self._backoff.delay_s(attempt, error.retry_after_s))
        raise AssertionError("unreachable")


def _unavailable(exc: Exception) -> BatchgateError:
    if isinstance(exc, BatchgateError):
        return exc
    return Unavailable(0, "connection_failed", f"{type(exc).__name__}: {exc}")
