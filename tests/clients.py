"""Concurrent HTTP clients for tests: many submissions at once, then long-polls."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
from google import genai
from google.genai import types

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class ClientRun:
    """What each client saw: its prompt, its task id and the finished task body."""

    prompts: list[str]
    ids: list[str | None] = field(default_factory=list)
    bodies: list[dict[str, Any] | None] = field(default_factory=list)
    retries: int = 0
    submit_statuses: list[int] = field(default_factory=list)
    #: Why a request ended without an answer (status codes and errors seen last).
    failures: list[str] = field(default_factory=list)


async def _submit(
    session: aiohttp.ClientSession, base: str, body: dict[str, Any], run: ClientRun, key: str
) -> str | None:
    last = ""
    # Retries are safe: the same Idempotency-Key gets the same task back.
    headers = {"Idempotency-Key": f"collect-{uuid.uuid4().hex}", "X-API-Key": key}
    for _attempt in range(50):
        try:
            async with session.post(f"{base}/api/v1/tasks", json=body, headers=headers) as response:
                run.submit_statuses.append(response.status)
                if response.status in (200, 202):  # 200: answered at once (from the cache)
                    return str((await response.json())["id"])
                last = f"submit {response.status}: {(await response.text())[:200]}"
                if response.status not in RETRY_STATUSES:
                    break
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            last = f"submit {type(exc).__name__}: {exc}"
        run.retries += 1
        await asyncio.sleep(0.1)
    run.failures.append(last)
    return None


async def _poll(
    session: aiohttp.ClientSession, base: str, task_id: str, deadline: float, run: ClientRun, key: str
) -> Any:
    while time.monotonic() < deadline:
        try:
            headers = {"X-API-Key": key}
            async with session.get(f"{base}/api/v1/tasks/{task_id}?wait=10", headers=headers) as response:
                if response.status == 200:
                    body = await response.json()
                    if body["status"] in ("succeeded", "failed"):
                        return body
                    continue
                if response.status not in RETRY_STATUSES:
                    return {"status": f"http_{response.status}", "body": await response.text()}
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # A replica killed while sending an answer: nginx has passed on its headers and
            # can only cut the body short. Reading the task again is safe.
            run.failures.append(f"poll {task_id} {type(exc).__name__}: {exc} (retrying)")
        run.retries += 1
        await asyncio.sleep(0.1)
    run.failures.append(f"poll {task_id}: deadline passed")
    return None


async def _one(
    session: aiohttp.ClientSession,
    base: str,
    body: dict[str, Any],
    deadline: float,
    run: ClientRun,
    i: int,
    key: str,
) -> None:
    task_id = await _submit(session, base, body, run, key)
    run.ids[i] = task_id
    if task_id is not None:
        run.bodies[i] = await _poll(session, base, task_id, deadline, run, key)


def submit_and_collect(
    base: str, bodies: list[dict[str, Any]], api_key: str | list[str], timeout: float = 90.0
) -> ClientRun:
    """Send every body at once (one connection each), then long-poll each task to the end.

    ``api_key``: one key for all, or one per body (several tenants at once). Like a careful
    client, retry 502/503/504, connection errors and answers cut short (nginx answers those
    while a replica is down; submissions carry an Idempotency-Key so a retry is safe);
    anything else is recorded as seen.
    """
    run = ClientRun(
        prompts=[b["prompt"] for b in bodies], ids=[None] * len(bodies), bodies=[None] * len(bodies)
    )
    keys = [api_key] * len(bodies) if isinstance(api_key, str) else api_key

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=len(bodies) + 10)
        timeout_cfg = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout_cfg) as session:
            deadline = time.monotonic() + timeout
            await asyncio.gather(
                *(
                    _one(session, base, body, deadline, run, i, key)
                    for i, (body, key) in enumerate(zip(bodies, keys, strict=True))
                )
            )

    asyncio.run(main())
    return run


def read_events(url: str, headers: dict[str, str], timeout: float = 30) -> list[tuple[str, str, dict]]:
    """(id, event, data) of an SSE stream, read until the server closes it."""
    events, fields = [], {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if not line:
                if "event" in fields:
                    events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    return events


def gemini_sdk_replies(base_url: str, api_key: str, prompts: list[str]) -> list[Any]:
    """One concurrent ``generate_content`` per prompt with the unmodified google-genai SDK."""
    sdk = genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=base_url))

    async def all_of_them() -> list[Any]:
        try:
            return await asyncio.gather(
                *(sdk.aio.models.generate_content(model="gemini-2.5-flash", contents=p) for p in prompts)
            )
        finally:
            await sdk.aio.aclose()  # on the loop that opened its session

    try:
        return asyncio.run(all_of_them())
    finally:
        sdk.close()


def openai_sdk_replies(base_url: str, api_key: str, prompts: list[str]) -> list[Any]:
    """One concurrent chat completion per prompt with the unmodified openai SDK."""

    async def all_of_them() -> list[Any]:
        async with openai.AsyncOpenAI(api_key=api_key, base_url=f"{base_url}/v1") as client:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="gemini-2.5-flash", messages=[{"role": "user", "content": p}]
                    )
                    for p in prompts
                )
            )

    return asyncio.run(all_of_them())
