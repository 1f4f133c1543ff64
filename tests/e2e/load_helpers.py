"""Client load on the cluster: numbered task bodies, a burst of submissions, each client's own answer."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from batching.simulator.answers import answer_for
from tests.clients import ClientRun


def assert_own_answers(run: ClientRun) -> None:
    missing = [p for p, b in zip(run.prompts, run.bodies, strict=True) if b is None]
    statuses = sorted(set(run.submit_statuses))
    assert not missing, (
        f"{len(missing)} requests lost, e.g. {missing[:3]}; submit statuses seen {statuses}; {run.failures[:5]}"
    )
    for prompt, body in zip(run.prompts, run.bodies, strict=True):
        assert body is not None and body["status"] == "succeeded", body
        assert body["result"]["text"] == answer_for(prompt)


def bodies(tag: str, n: int) -> list[dict]:
    return [{"prompt": f"{tag} #{i}: plan step {i} of the migration"} for i in range(n)]


def burst(url: str, key: str, n: int) -> tuple[list[tuple[int, dict[str, str]]], float]:
    """``n`` simultaneous submissions (no retries); returns (status, headers) each and the burst's length."""

    async def main() -> tuple[list[tuple[int, dict[str, str]]], float]:
        connector = aiohttp.TCPConnector(limit=n)
        async with aiohttp.ClientSession(connector=connector, headers={"X-API-Key": key}) as session:

            async def one(i: int) -> tuple[int, dict[str, str]]:
                async with session.post(
                    f"{url}/api/v1/tasks", json={"prompt": f"burst {i}", "cache": False}
                ) as r:
                    await r.read()
                    return r.status, dict(r.headers)

            started = time.monotonic()
            results = await asyncio.gather(*(one(i) for i in range(n)))
            return list(results), time.monotonic() - started

    return asyncio.run(main())
