"""What the sync and async clients share: how each call is asked and how its answer is read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from batchgate_client._retry import retried
from batchgate_client._types import BatchgateError, Task, UsageReport, error_of

#: The longest one long-poll asks the server to hold (the API caps it at its own maximum).
LONG_POLL_S = 30.0
USER_AGENT = "batchgate-client/0.1"


@dataclass(frozen=True)
class Call:
    """One API call: method, path, query, JSON body and headers."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def headers(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}


def submission(path: str, prompt: str | None, fields: dict[str, Any], idempotency_key: str | None) -> Call:
    """A task's submission with an ``Idempotency-Key`` (a fresh one unless given), so that
    every retry of it is the same task."""
    body = {k: v for k, v in fields.items() if v is not None}
    if prompt is not None:
        body["prompt"] = prompt
    return Call("POST", path, body=body, headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex})


def task_of(response: httpx.Response, task_id: str | None = None) -> Task:
    body = response.json()
    if task_id is None:
        location = response.headers.get("Location", "")
        task_id = location.rstrip("/").rsplit("/", 1)[-1] if location else None
    return Task.of(body, task_id)


def failure(response: httpx.Response) -> BatchgateError | None:
    """The typed error of an error answer (None for a success)."""
    if response.status_code < 400:
        return None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_of(response.status_code, body, response.headers.get("Retry-After"))


def worth_retrying(error: BatchgateError) -> bool:
    return retried(error.status, error.code)


def usage_call(from_: str | None = None, to: str | None = None, group_by: str | None = None) -> Call:
    """``GET /api/v1/usage``; the server's defaults (this month so far) for what is not given."""
    params = {k: v for k, v in (("from", from_), ("to", to), ("group_by", group_by)) if v}
    return Call("GET", "/api/v1/usage", params=params)


def usage_of(response: httpx.Response) -> UsageReport:
    """The typed report of a usage answer (both clients read it the same way)."""
    return UsageReport.of(response.json())
