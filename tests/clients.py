"""Concurrent HTTP clients for tests: many submissions at once, then long-polls."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class ClientRun:
    """What each client saw: its prompt, its task id and the finished task body."""

    prompts: list[str]
    ids: list[str | None] = field(default_factory=list)
    bodies: list[dict[str, Any] | None] = field(default_factory=list)
    retries: int = 0
    submit_statuses: list[int] = field(default_factory=list)


async def _submit(
    session: aiohttp.ClientSession, base: str, body: dict[str, Any], run: ClientRun
) -> str | None:
    for _attempt in range(50):
        try:
            async with session.post(f"{base}/api/v1/tasks", json=body) as response:
                run.submit_statuses.append(response.status)
                if response.status == 202:
                    return str((await response.json())["id"])
                if response.status not in RETRY_STATUSES:
                    return None
        except aiohttp.ClientConnectionError:
            pass
        run.retries += 1
        await asyncio.sleep(0.1)
    return None


async def _poll(
    session: aiohttp.ClientSession, base: str, task_id: str, deadline: float, run: ClientRun
) -> Any:
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/api/v1/tasks/{task_id}?wait=10") as response:
                if response.status == 200:
                    body = await response.json()
                    if body["status"] in ("succeeded", "failed"):
                        return body
                    continue
                if response.status not in RETRY_STATUSES:
                    return {"status": f"http_{response.status}", "body": await response.text()}
        except aiohttp.ClientConnectionError:
            pass
        run.retries += 1
        await asyncio.sleep(0.1)
    return None


async def _one(
    session: aiohttp.ClientSession, base: str, body: dict[str, Any], deadline: float, run: ClientRun, i: int
) -> None:
    task_id = await _submit(session, base, body, run)
    run.ids[i] = task_id
    if task_id is not None:
        run.bodies[i] = await _poll(session, base, task_id, deadline, run)


def submit_and_collect(base: str, bodies: list[dict[str, Any]], timeout: float = 90.0) -> ClientRun:
    """Send every body at once (one connection each), then long-poll each task to the end.

    Like a careful client, retry 502/503/504 and connection errors (nginx answers those
    while a replica is down); anything else is recorded as seen.
    """
    run = ClientRun(
        prompts=[b["prompt"] for b in bodies], ids=[None] * len(bodies), bodies=[None] * len(bodies)
    )

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=len(bodies) + 10)
        timeout_cfg = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout_cfg) as session:
            deadline = time.monotonic() + timeout
            await asyncio.gather(
                *(_one(session, base, body, deadline, run, i) for i, body in enumerate(bodies))
            )

    asyncio.run(main())
    return run
