"""``make chaos``: steady load through nginx while processes die and Redis goes away; every
accepted request must end, once, with its own answer (or, a prompt the model blocks, with
``model_blocked`` while its batch's other requests get theirs).

A cluster of its own (``make run``'s programs on free ports, with the settings ``make run``
ships: no timeout is shortened, so a killed worker's tasks come back through its leases, not a
short visibility timeout) takes ``n`` submissions at ``rate`` per second. Every
``BLOCK_EVERY``-th one carries the simulator's block marker. Meanwhile the harness runs
``PLAN``: it SIGKILLs the batch worker's process group twice, sends one body 20 times at once
with one Idempotency-Key while it SIGKILLs an API replica, stops Redis for ``REDIS_OUTAGE_S``
and later restarts it; supervisor restarts what was killed. Clients submit with an
``Idempotency-Key`` and retry what got no definitive answer (connection errors, 502/503/504,
429), long-poll every accepted task to a final state, and read it again at the end. The counts
(``stack.chaos_counts``) are printed as one ``key=value`` line; the exit status is 1 when
anything was refused, lost, duplicated or not as expected, or slower than ``--max-latency-s``.

Loopback only, bounded in count and time: ``python -m stack.chaos --n 2000``.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from batching.simulator.answers import answer_for
from stack import task_client
from stack.chaos_counts import Submission, count, failed_run, line
from stack.chaos_report import write_report
from stack.cluster import Cluster
from stack.ports import isolated_stack_env

#: What the fault cluster sets besides free ports and its run folder: nothing about timeouts or
#: recovery. Redis keeps an append-only file (it is stopped and restarted: what it held must
#: survive, as a deployment's Redis would). The premium rate limit is out of the way: one key
#: sends the traffic of many clients, and after Redis is back its clients send ten seconds of
#: retries at once; 429s there would measure the rate limiter, not the recovery.
HARNESS_SETTINGS = {
    "BATCHGATE_REDIS_APPENDONLY": "true",
    "BATCHGATE_TIER_PREMIUM_RATE": "100000",
    "BATCHGATE_TIER_PREMIUM_BURST": "100000",
}
#: Inherited variables dropped, so the run is on the shipped defaults whatever the shell sets
#: (and on the embedded simulator, never real Gemini).
DROPPED_PREFIX = "BATCHGATE_"
DROPPED = frozenset({"GEMINI_API_KEY", "DATABASE_URL"})


@dataclass(frozen=True)
class Fault:
    """One step of the plan: at ``share`` of the load (or as soon as the step before is over)."""

    share: float
    action: str  # kill (SIGKILL a program's process group), same-key, outage or restart
    target: str = ""


#: The fault schedule over the load. ``same-key`` sends one body from ``SAME_KEY_CLIENTS``
#: clients at once with one Idempotency-Key, and the API replica is killed as they arrive.
PLAN = (
    Fault(0.10, "kill", "worker"),
    Fault(0.25, "same-key"),
    Fault(0.25, "kill", "api"),
    Fault(0.40, "outage", "redis"),
    Fault(0.70, "restart", "redis"),
    Fault(0.85, "kill", "worker"),
)
#: How long Redis stays stopped in an outage.
REDIS_OUTAGE_S = 10.0
#: Clients sending one body with one Idempotency-Key at once.
SAME_KEY_CLIENTS = 20
#: Every this many submissions, one carries the simulator's block marker (it must fail alone).
BLOCK_EVERY = 40
#: After the last submission, how long pollers may wait for the last answers.
DRAIN_S = 150.0
#: The slowest accepted task (submission to answer) a passing run may have: a killed worker's
#: tasks come back after its lease lapses (10 s) and a new worker starts.
MAX_LATENCY_S = 60.0
#: kombu's Redis transport keeps every message taken and not yet acknowledged in this hash.
KOMBU_UNACKED = "unacked"
#: Polls in flight at once; the client's connection pool holds more, so submissions never wait.
POLLS = 400
CONNECTIONS = 600


def chaos_env(run_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """Settings for the fault cluster: the shipped defaults, free ports, its own Redis."""
    env = {k: v for k, v in base.items() if not k.startswith(DROPPED_PREFIX) and k not in DROPPED}
    env.update(HARNESS_SETTINGS)
    env.update(isolated_stack_env(run_dir))
    return env


class Run:
    """One fault run against a started cluster."""

    def __init__(self, cluster: Cluster, n: int, rate: float, drain_s: float = DRAIN_S) -> None:
        self.cluster = cluster
        self.settings = cluster.settings
        self.url = f"http://127.0.0.1:{self.settings.stack.nginx_port}"
        self.headers = {"X-API-Key": self.settings.edge.demo_api_key}
        self.rate = rate
        self.load_s = n / rate
        self.drain_s = drain_s
        tag = secrets.token_hex(3)
        marker = self.settings.simulator.block_marker
        self.submissions = [_submission(f"chaos {tag} #{i}", i, marker) for i in range(n)]
        self._keys = [f"chaos-{tag}-{i}" for i in range(n)]
        self.same_key = Submission(
            f"chaos {tag} same key: list the steps of one job",
            answer_for(f"chaos {tag} same key: list the steps of one job"),
            clients=SAME_KEY_CLIENTS,
        )
        self._same_key = f"chaos-{tag}-same"
        #: What was injected: action, target, wall-clock start and end, offset into the load.
        self.faults: list[dict[str, Any]] = []
        self._background: list[asyncio.Task[None]] = []
        self._deadline = 0.0

    @property
    def everything(self) -> list[Submission]:
        return [*self.submissions, self.same_key]

    async def go(self) -> float:
        """Run the load and the faults; the seconds from the first submission to the last read."""
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            started = time.monotonic()
            self._deadline = started + self.load_s + self.drain_s
            gate = asyncio.Semaphore(POLLS)
            clients = [
                asyncio.create_task(self._one(http, s, self._keys[i], started + i / self.rate, gate))
                for i, s in enumerate(self.submissions)
            ]
            await self._inject(http, gate, started)
            pending = [*clients, *self._background]
            await asyncio.wait(pending, timeout=max(1.0, self._deadline - time.monotonic() + 30))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._reread(http)
            return time.monotonic() - started

    async def _inject(self, http: aiohttp.ClientSession, gate: asyncio.Semaphore, started: float) -> None:
        """Run ``PLAN``: each step at its share of the load, and never before the last is over."""
        for fault in PLAN:
            await asyncio.sleep(max(0.0, started + fault.share * self.load_s - time.monotonic()))
            began = time.time()
            target = fault.target
            if fault.action == "same-key":
                self._background.append(asyncio.create_task(self._same_key_clients(http, gate)))
                await asyncio.sleep(0.05)  # the kill that follows meets them in flight
            elif fault.action == "kill":
                target = f"api-{self.settings.api.api_ports[0]}" if target == "api" else target
                await asyncio.to_thread(self.cluster.kill, target)  # SIGKILL to its process group
            elif fault.action == "outage":
                await asyncio.to_thread(self.cluster.stop_program, target)
                await asyncio.sleep(REDIS_OUTAGE_S)
                await asyncio.to_thread(self.cluster.start_program, target)
            else:
                await asyncio.to_thread(self.cluster.restart, target)
            what = f"{fault.action} {target}".strip()
            at = time.monotonic() - started
            self.faults.append({"what": what, "began": began, "ended": time.time(), "at_s": round(at, 1)})
            print(f"chaos: {what} over at +{at:.1f}s", file=sys.stderr)

    async def _one(
        self, http: aiohttp.ClientSession, s: Submission, key: str, at: float, gate: asyncio.Semaphore
    ) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        s.final = await self._client(http, s, key, gate)

    async def _same_key_clients(self, http: aiohttp.ClientSession, gate: asyncio.Semaphore) -> None:
        s = self.same_key
        finals = await asyncio.gather(
            *(self._client(http, s, self._same_key, gate) for _ in range(s.clients))
        )
        s.final, s.echoes = finals[0], list(finals[1:])

    async def _client(
        self, http: aiohttp.ClientSession, s: Submission, key: str, gate: asyncio.Semaphore
    ) -> dict[str, Any] | None:
        """Submit ``s`` until accepted, then wait for its end: the finished record (None: none)."""
        task_id = await self._submit(http, s, key)
        if task_id is None:
            return None
        async with gate:
            return await self._poll(http, task_id)

    async def _submit(self, http: aiohttp.ClientSession, s: Submission, key: str) -> str | None:
        accepted = await task_client.submit(
            http, self.url, self.headers, {"prompt": s.prompt, "cache": False}, key
        )
        s.attempts += accepted.attempts
        if accepted.task_id is not None:
            s.task_ids.append(accepted.task_id)
        if accepted.refused:
            s.refused = accepted.refused
        return accepted.task_id

    async def _poll(self, http: aiohttp.ClientSession, task_id: str) -> dict[str, Any] | None:
        return await task_client.wait_final(http, self.url, self.headers, task_id, self._deadline)

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

        await asyncio.gather(*(one(s) for s in self.everything if s.final is not None))

    def read_records(self) -> dict[str, dict[str, Any]]:
        """Each accepted task's record as Redis holds it at the end; notes on each submission
        the sweeper's re-enqueues and the batch that answered it (who claimed it, when)."""
        client = redis.Redis.from_url(self.settings.broker.redis_url, decode_responses=True)
        try:
            store = TaskStore(client, self.settings.broker.key_prefix, self.settings.broker.task_ttl_s)
            accepted = [s for s in self.everything if s.task_ids]
            pipe = client.pipeline(transaction=False)
            for submission in accepted:
                pipe.hgetall(store.key(submission.task_ids[0]))
            records = {}
            for submission, raw in zip(accepted, pipe.execute(), strict=True):
                submission.requeued = int(raw.get("recoveries") or 0)
                if raw.get("claimed_by") and raw.get("picked_at"):
                    submission.batch = (raw["claimed_by"], raw["picked_at"])
                raw.pop("request", None)
                records[submission.task_ids[0]] = raw
            return records
        finally:
            client.close()

    def messages(self) -> dict[str, str]:
        """Where the task messages still in Redis are at the end: ``queue`` (waiting), or
        ``unacknowledged`` (taken by a worker; the broker gives them back only after the
        visibility timeout). An unfinished task in neither has only the orphan sweeper."""
        client = redis.Redis.from_url(self.settings.broker.redis_url, decode_responses=True)
        try:
            found = {_task_id(raw): "queue" for raw in client.lrange(self.settings.broker.queue, 0, -1)}
            for raw in client.hvals(KOMBU_UNACKED):  # each is [message, exchange, routing key]
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                found[_task_id(entry[0] if isinstance(entry, list) and entry else None)] = "unacknowledged"
            found.pop("", None)
            return found
        finally:
            client.close()

    def model_stats(self) -> dict[str, Any]:
        """The simulator's counters (``items``: prompts answered)."""
        url = f"{self.settings.gemini.embedded_simulator_url}/_sim/stats"
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.load(response))


def _task_id(message: object) -> str:
    """The task id in a kombu message (its JSON, or the decoded dict): from its ``headers``."""
    if isinstance(message, str | bytes):
        try:
            message = json.loads(message)
        except ValueError:
            return ""
    headers = message.get("headers") if isinstance(message, dict) else None
    return str(headers.get("id") or "") if isinstance(headers, dict) else ""


def _submission(head: str, i: int, block_marker: str) -> Submission:
    if i % BLOCK_EVERY == BLOCK_EVERY // 2:
        prompt = f"{head}: {block_marker} list the steps of job {i}"
        return Submission(prompt, "", expected_error="model_blocked")
    prompt = f"{head}: list the steps of job {i}"
    return Submission(prompt, answer_for(prompt))


def run_chaos(
    n: int,
    rate: float,
    run_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    drain_s: float = DRAIN_S,
) -> dict[str, Any]:
    """Start a fault cluster, run the load and the faults, stop it; the counts. ``env``: what
    the cluster's programs inherit (default ``os.environ``; its ``BATCHGATE_*`` are dropped)."""
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="batchgate-chaos-"))
    print(f"chaos: cluster and report in {run_dir}", file=sys.stderr)
    cluster_env = chaos_env(run_dir, os.environ if env is None else env)
    cluster = Cluster(Settings.from_env(cluster_env), run_dir, cluster_env)
    cluster.start()
    try:
        cluster.wait_ready(120)
        run = Run(cluster, n, rate, drain_s)
        duration_s = asyncio.run(run.go())
        records = run.read_records()
        messages = run.messages()
        stats = run.model_stats()
        ends = [(f["what"], f["ended"]) for f in run.faults if f["what"] != "same-key"]
        counts = count(run.everything, int(stats["items"]), ends)
        counts.update({"rate": rate, "duration_s": round(duration_s, 1)})
        refused = [s.refused for s in run.everything if s.refused][:3]
        if refused:
            counts["refusals"] = json.dumps(refused)
        write_report(run_dir / "chaos-report.json", run, counts, records, messages, stats, HARNESS_SETTINGS)
        return counts
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("CHAOS_N", "2000")), help="submissions")
    parser.add_argument(
        "--rate", type=float, default=float(os.environ.get("CHAOS_RATE", "40")), help="per second"
    )
    parser.add_argument(
        "--max-latency-s", type=float, default=MAX_LATENCY_S, help="slowest task a passing run may have"
    )
    args = parser.parse_args(argv)
    counts = run_chaos(args.n, args.rate)
    print(line(counts))
    return 1 if failed_run(counts) or counts["max_latency_s"] > args.max_latency_s else 0


if __name__ == "__main__":
    raise SystemExit(main())
