"""``make chaos``: steady load through nginx while processes are killed; every accepted
request must end, once, with its own answer.

A cluster of its own (``make run``'s programs on free ports, its own Redis with an
append-only file, short timeouts so redelivery happens within the run) takes ``n``
submissions at ``rate`` per second. Meanwhile the harness SIGKILLs the batch worker's
process group (main process and pool) at intervals, SIGKILLs one API replica (master and
workers), and restarts Redis once; supervisor restarts what died. Clients submit with an
``Idempotency-Key`` and retry what got no definitive answer (connection errors, 502/503/
504, 429), then long-poll every accepted task to a final state, and read it again at the
end. The counts (``batchgate.chaos_counts``) are printed as one ``key=value`` line; the
exit status is 1 when anything was lost, duplicated or unexpected.

Loopback only, bounded in count and time: ``python -m batchgate.chaos --n 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import redis

from batchgate.apikeys import new_key
from batchgate.chaos_counts import Submission, count, line
from batchgate.cluster import Cluster, free_port
from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from batching.simulator.answers import answer_for

#: Short enough that redelivery and the sweeper act within a run of a minute or two:
#: longest batch = 0.1 + 3 attempts of 2 s + 2 backoffs of 0.5 s + 1 s = 8.1 s < visibility timeout 10 s.
FAST_RECOVERY = {
    "BATCHGATE_GEMINI_TIMEOUT_S": "2",
    "BATCHGATE_RETRY_ATTEMPTS": "3",
    "BATCHGATE_RETRY_MAX_S": "0.5",
    "BATCHGATE_SESSION_ORDER_WAIT_S": "1",
    "BATCHGATE_VISIBILITY_TIMEOUT_S": "10",
    "BATCHGATE_ORPHAN_AFTER_S": "20",
    "BATCHGATE_ORPHAN_SWEEP_INTERVAL_S": "4",
}
#: Times of a task the report lists for each one the sweeper re-enqueued.
TIMES = ("submitted_at", "finished_at", "timings")
#: Submit attempts per request before giving up (about a minute of retrying).
SUBMIT_ATTEMPTS = 60
#: After the last submission, how long pollers may wait for the last answers.
DRAIN_S = 150.0


def chaos_env(run_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """Settings for the fault cluster: free ports, its own persistent Redis, fast recovery."""
    env = dict(base)
    env.update(FAST_RECOVERY)
    env.update(
        {
            "BATCHGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "BATCHGATE_REDIS_APPENDONLY": "true",
            "BATCHGATE_API_PORTS": ",".join(str(free_port()) for _ in range(3)),
            "BATCHGATE_NGINX_PORT": str(free_port()),
            "BATCHGATE_NGINX_TLS_PORT": str(free_port()),
            "BATCHGATE_FLOWER_PORT": str(free_port()),
            "BATCHGATE_SIM_PORT": str(free_port()),
            "BATCHGATE_SIMULATOR_URL": "",
            "BATCHGATE_RUN_DIR": str(run_dir),
            "BATCHGATE_DEMO_API_KEY": new_key(),
            "BATCHGATE_TIER_PREMIUM_RATE": "100000",
            "BATCHGATE_TIER_PREMIUM_BURST": "100000",
        }
    )
    env.pop("GEMINI_API_KEY", None)
    return env


class Run:
    """One fault run against a started cluster."""

    def __init__(self, cluster: Cluster, n: int, rate: float) -> None:
        self.cluster = cluster
        self.settings = cluster.settings
        self.url = f"http://127.0.0.1:{self.settings.nginx_port}"
        self.headers = {"X-API-Key": self.settings.demo_api_key}
        self.rate = rate
        tag = secrets.token_hex(3)
        self.submissions = [
            Submission(prompt=p, expected_text=answer_for(p))
            for p in (f"chaos {tag} #{i}: list the steps of job {i}" for i in range(n))
        ]
        self.faults: list[tuple[str, float]] = []
        self._keys = [f"chaos-{tag}-{i}" for i in range(n)]

    async def go(self) -> None:
        load_s = len(self.submissions) / self.rate
        connector = aiohttp.TCPConnector(limit=400)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            started = time.monotonic()
            faults = asyncio.create_task(self._inject(load_s))
            polls = 400
            gate = asyncio.Semaphore(polls)
            clients = [
                asyncio.create_task(self._client(http, i, started + i / self.rate, gate))
                for i in range(len(self.submissions))
            ]
            await faults
            await asyncio.wait(clients, timeout=load_s + DRAIN_S + 60)
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            await self._reread(http)

    async def _inject(self, load_s: float) -> None:
        """The fault schedule, spread over the load: worker, API replica, Redis, worker."""
        api_victim = f"api-{self.settings.api_ports[0]}"
        plan = [
            (0.15, "kill worker"),
            (0.35, f"kill {api_victim}"),
            (0.55, "restart redis"),
            (0.75, "kill worker"),
        ]
        begin = time.monotonic()
        for share, what in plan:
            await asyncio.sleep(max(0.0, begin + share * load_s - time.monotonic()))
            self.faults.append((what, time.time()))
            action, name = what.split(" ", 1)
            if action == "kill":
                await asyncio.to_thread(self._kill, name)
            else:
                await asyncio.to_thread(self.cluster.restart, name)
            print(f"chaos: {what} at +{time.monotonic() - begin:.1f}s", file=sys.stderr)

    def _kill(self, name: str) -> None:
        self.cluster.kill(name)  # SIGKILL to the program's whole process group

    async def _client(self, http: aiohttp.ClientSession, i: int, at: float, gate: asyncio.Semaphore) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        submission = self.submissions[i]
        task_id = await self._submit(http, i)
        if task_id is None:
            return
        async with gate:
            submission.final = await self._poll(http, task_id)

    async def _submit(self, http: aiohttp.ClientSession, i: int) -> str | None:
        submission = self.submissions[i]
        body = {"prompt": submission.prompt, "cache": False}
        headers = {**self.headers, "Idempotency-Key": self._keys[i]}
        for _ in range(SUBMIT_ATTEMPTS):
            submission.attempts += 1
            delay = 0.5
            try:
                async with http.post(f"{self.url}/api/v1/tasks", json=body, headers=headers) as response:
                    reply = await response.json(content_type=None)
                    if response.status in (200, 202):
                        submission.task_ids.append(str(reply["id"]))
                        return str(reply["id"])
                    if response.status not in (429, 502, 503, 504):
                        submission.refused = f"{response.status} {reply}"
                        return None
                    delay = float(response.headers.get("Retry-After", delay))
            except (TimeoutError, aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(min(delay, 2.0))
        submission.refused = "no definitive answer"
        return None

    async def _poll(self, http: aiohttp.ClientSession, task_id: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + len(self.submissions) / self.rate + DRAIN_S
        missing = 0
        while time.monotonic() < deadline:
            try:
                async with http.get(
                    f"{self.url}/api/v1/tasks/{task_id}?wait=20", headers=self.headers
                ) as response:
                    if response.status == 200:
                        record = await response.json()
                        if record["status"] in ("succeeded", "failed"):
                            return dict(record)
                        continue
                    if response.status == 404:
                        missing += 1
                        if missing >= 3:  # gone for good, not a replica between lives
                            return None
            except (TimeoutError, aiohttp.ClientError, ValueError):
                pass
            await asyncio.sleep(0.5)
        return None

    async def _reread(self, http: aiohttp.ClientSession) -> None:
        """Read every finished task again: an answer must never change."""
        gate = asyncio.Semaphore(100)

        async def one(submission: Submission) -> None:
            async with gate:
                for _ in range(5):
                    try:
                        url = f"{self.url}/api/v1/tasks/{submission.task_ids[0]}"
                        async with http.get(url, headers=self.headers) as response:
                            if response.status in (200, 404):
                                submission.reread = await response.json() if response.status == 200 else None
                                return
                    except (TimeoutError, aiohttp.ClientError):
                        pass
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(one(s) for s in self.submissions if s.final is not None))

    def read_requeues(self) -> None:
        client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        try:
            store = TaskStore(client, self.settings.key_prefix, self.settings.task_ttl_s)
            accepted = [s for s in self.submissions if s.task_ids]
            pipe = client.pipeline(transaction=False)
            for submission in accepted:
                pipe.hget(store.key(submission.task_ids[0]), "recoveries")
            for submission, value in zip(accepted, pipe.execute(), strict=True):
                submission.requeued = int(value or 0)
        finally:
            client.close()

    def model_items(self) -> int:
        url = f"{self.settings.embedded_simulator_url}/_sim/stats"
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(json.load(response)["items"])


def run_chaos(
    n: int, rate: float, run_dir: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start a fault cluster, run the load and the faults, stop it; the counts."""
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="batchgate-chaos-"))
    print(f"chaos: cluster and report in {run_dir}", file=sys.stderr)
    cluster_env = chaos_env(run_dir, dict(os.environ if env is None else env))
    cluster = Cluster(Settings.from_env(cluster_env), run_dir, cluster_env)
    cluster.start()
    try:
        cluster.wait_ready(120)
        run = Run(cluster, n, rate)
        asyncio.run(run.go())
        run.read_requeues()
        counts = count(run.submissions, run.model_items(), run.faults)
        refused = [s.refused for s in run.submissions if s.refused][:3]
        if refused:
            counts["refusals"] = json.dumps(refused)
        requeued = [
            {"task_id": s.task_ids[0], "requeued": s.requeued, **{k: (s.final or {}).get(k) for k in TIMES}}
            for s in run.submissions
            if s.requeued
        ]
        report = {"counts": counts, "faults": run.faults, "requeued": requeued}
        (run_dir / "chaos-report.json").write_text(json.dumps(report, indent=2))
        return counts
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchgate.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("CHAOS_N", "2000")), help="submissions")
    parser.add_argument(
        "--rate", type=float, default=float(os.environ.get("CHAOS_RATE", "40")), help="per second"
    )
    args = parser.parse_args(argv)
    counts = run_chaos(args.n, args.rate)
    print(line(counts))
    bad = counts["lost"] or counts["duplicated_results"] or counts["unexpected"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
