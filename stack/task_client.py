"""A client that submits a task until the stack accepts it and waits for its end, as the fault
harnesses (``make chaos``, ``make compose-test``) need: through replicas dying and restarting."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

#: Submissions of one task before it counts as refused.
SUBMIT_ATTEMPTS = 60
#: Longest pause between two attempts (a Retry-After above it is cut short).
MAX_RETRY_PAUSE_S = 2.0
#: Consecutive 404s after which a task is gone for good, not on a replica between lives.
MISSING_AFTER = 3


@dataclass
class Accepted:
    """What submitting one task came to."""

    #: The id the API answered with; None when it was never accepted.
    task_id: str | None
    #: Attempts made.
    attempts: int
    #: A definitive refusal (a 4xx other than 429, or attempts exhausted).
    refused: str | None = None


async def submit(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any], key: str
) -> Accepted:
    """POST ``body`` to ``url``/api/v1/tasks with Idempotency-Key ``key`` until accepted: what
    gets no definitive answer (connection errors, 429, 502, 503, 504) is sent again."""
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        pause = 0.5
        try:
            async with http.post(
                f"{url}/api/v1/tasks", json=body, headers={**headers, "Idempotency-Key": key}
            ) as response:
                reply = await response.json(content_type=None)
                if response.status in (200, 202):
                    return Accepted(str(reply["id"]), attempt)
                if response.status not in (429, 502, 503, 504):
                    return Accepted(None, attempt, f"{response.status} {reply}")
                pause = float(response.headers.get("Retry-After", pause))
        except (TimeoutError, aiohttp.ClientError, ValueError):
            pass
        await asyncio.sleep(min(pause, MAX_RETRY_PAUSE_S))
    return Accepted(None, SUBMIT_ATTEMPTS, "no definitive answer")


async def wait_final(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], task_id: str, deadline: float
) -> dict[str, Any] | None:
    """Long-poll the task until it has succeeded or failed: its record; None when it is gone
    or ``deadline`` (``time.monotonic()``) passes first."""
    missing = 0
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{url}/api/v1/tasks/{task_id}?wait=20", headers=headers) as response:
                if response.status == 200:
                    record = await response.json()
                    if record["status"] in ("succeeded", "failed"):
                        return dict(record)
                    continue
                if response.status == 404:
                    missing += 1
                    if missing >= MISSING_AFTER:
                        return None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            pass
        await asyncio.sleep(0.5)
    return None
