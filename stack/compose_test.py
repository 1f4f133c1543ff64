"""``make compose-test``: the container cluster for real, from a clean state to gone again.

Builds the images, starts the stack (``make up``'s path) with a Gemini-like simulator, waits for
every health check, sends 200 tasks through nginx over HTTPS (certificate verified) and checks
each gets its own answer; runs the same closed-loop load on one worker and then on three
(``--scale worker=3``: every one must take work); then SIGKILLs a worker container and an API
container under a third load and counts what was lost; then ``down -v``. Prints one ``key=value`` line, like ``make chaos``; exit 1 when anything was lost
or answered wrongly, or a worker of the three took no batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from batching.simulator.answers import answer_for
from stack import task_client
from stack.compose_cli import PROJECT, compose_env, entry_url, prepare, wait_ready
from stack.images import build_images, compose_command
from stack.programs import REPO

#: The simulator's cost model for the run: Gemini-like (as make bench's), without its quota.
GEMINI_LIKE = {
    "BATCHGATE_SIM_OVERHEAD_MS": "400",
    "BATCHGATE_SIM_PER_INPUT_TOKEN_MS": "0.02",
    "BATCHGATE_SIM_PER_OUTPUT_TOKEN_MS": "2",
    "BATCHGATE_SIM_MAX_CONCURRENT": "8",
}
#: Closed-loop clients of each load phase.
CLIENTS = 48
#: Tasks of the first check, and of each load phase.
FIRST_TASKS = 200
PHASE_TASKS = 500
FAULT_TASKS = 300
#: Everything a phase accepted must be finished this long after the phase began.
PHASE_LIMIT_S = 600.0
HEALTH_TIMEOUT_S = 240.0


@dataclass
class Phase:
    """What one load phase saw."""

    accepted: int = 0
    answered_right: int = 0
    wrong: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Tasks answered, by the host name of the worker container that ran them.
    workers: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.answered_right / self.seconds if self.seconds else 0.0


class Stack:
    """The compose project, driven through the compose CLI this machine has."""

    def __init__(self, root: Path, environ: dict[str, str]) -> None:
        self.root = root
        self.compose = [*compose_command(), "-p", PROJECT]
        self.environ = environ
        self.env = compose_env(root, environ)
        self.url = entry_url(self.env)
        self.key = self.env["BATCHGATE_DEMO_API_KEY"]
        self.ca = root / "certs" / "fullchain.pem"

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*self.compose, *args], cwd=self.root, capture_output=True, text=True, env=self.environ
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()[-800:]}")
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).split()

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        """Until every running container of the project with a health check is healthy."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = {cid: _health(cid) for cid in self.run("ps", "-q").split()}
            waiting = [cid for cid, state in states.items() if state not in ("healthy", "none")]
            if states and not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not healthy after {timeout_s:.0f} s: {waiting}")
            time.sleep(2)

    def sim_stats(self) -> dict[str, Any]:
        """The simulator's counters (its port is not published: read inside its container)."""
        code = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8090/_sim/stats').read().decode())"
        cid = self.containers("simulator")[0]
        out = subprocess.run(["docker", "exec", cid, "python", "-c", code], capture_output=True, text=True)
        return dict(json.loads(out.stdout))

    def worker_hosts(self) -> list[str]:
        """The host names of the worker containers (their short ids)."""
        return [cid[:12] for cid in self.containers("worker")]


def _health(cid: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", cid],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "gone"


async def load(stack: Stack, tasks: int, tag: str, faults: list[tuple[float, str]] | None = None) -> Phase:
    """``tasks`` unique prompts from ``CLIENTS`` closed-loop clients; each is submitted with an
    Idempotency-Key until accepted, then awaited; ``faults``: (seconds in, container) SIGKILLed."""
    phase = Phase()
    tls = ssl.create_default_context(cafile=str(stack.ca))
    tls.check_hostname = False  # 127.0.0.1 is not among the self-signed certificate's names
    headers = {"X-API-Key": stack.key}
    prompts = iter(f"compose-test {tag} {uuid.uuid4().hex[:8]} task {i}" for i in range(tasks))
    started = time.monotonic()
    deadline = started + PHASE_LIMIT_S

    async def client(http: aiohttp.ClientSession) -> None:
        for prompt in prompts:
            body = {"prompt": prompt, "cache": False}
            task_id = (await task_client.submit(http, stack.url, headers, body, uuid.uuid4().hex)).task_id
            if task_id is None:
                phase.lost.append(f"not accepted: {prompt}")
                continue
            phase.accepted += 1
            record = await task_client.wait_final(http, stack.url, headers, task_id, deadline)
            if record is None:
                phase.lost.append(task_id)
            elif record.get("status") == "succeeded" and record["result"]["text"] == answer_for(prompt):
                phase.answered_right += 1
                phase.workers[str(record.get("timings", {}).get("worker", "?")).split(":")[0]] += 1
            else:
                phase.wrong.append(f"{task_id}: {record.get('status')} {record.get('error')}")

    async def inject() -> None:
        for at, container in faults or []:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            subprocess.run(["docker", "kill", "-s", "KILL", container], capture_output=True)
            print(f"compose-test: SIGKILL {container[:12]} at +{at:.0f}s", file=sys.stderr)

    connector = aiohttp.TCPConnector(ssl=tls, limit=CLIENTS * 2)
    timeout = aiohttp.ClientTimeout(total=40)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        injecting = asyncio.create_task(inject())
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
        await injecting
    phase.seconds = time.monotonic() - started
    return phase


def items_per_call(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """Items per model call between two readings of the simulator's counters."""
    calls = int(after.get("calls", 0)) - int(before.get("calls", 0))
    items = int(after.get("items", 0)) - int(before.get("items", 0))
    return round(items / calls, 2) if calls else None


def run(root: Path = REPO) -> dict[str, Any]:
    """The whole test; the counts it prints."""
    environ = {**os.environ, **GEMINI_LIKE}
    for line in prepare(root, environ):
        print(f"compose-test: {line}", file=sys.stderr)
    stack = Stack(root, environ)
    stack.run("down", "--volumes", "--remove-orphans")
    counts: dict[str, Any] = {}
    try:
        build_images(stack.env, environ)
        stack.run("up", "-d", "--no-build")
        stack.wait_healthy()
        if not wait_ready(f"{stack.url}/ready", stack.ca, 60):
            raise RuntimeError("/ready did not answer 200")
        first = asyncio.run(load(stack, FIRST_TASKS, "first"))
        stats_start = stack.sim_stats()
        one = asyncio.run(load(stack, PHASE_TASKS, "one-worker"))
        stats_before = stack.sim_stats()
        stack.run("up", "-d", "--no-build", "--scale", "worker=3")
        stack.wait_healthy()
        three = asyncio.run(load(stack, PHASE_TASKS, "three-workers"))
        stats = stack.sim_stats()
        took = [host for host in stack.worker_hosts() if three.workers[host]]
        faults = [(2.0, stack.containers("worker")[1]), (4.0, stack.containers("api")[0])]
        faulted = asyncio.run(load(stack, FAULT_TASKS, "faults", faults))
        phases = (first, one, three, faulted)
        counts = {
            "tasks": sum(p.accepted for p in phases),
            "right": sum(p.answered_right for p in phases),
            "wrong": sum(len(p.wrong) for p in phases),
            "lost": sum(len(p.lost) for p in phases),
            "items_per_call_1_worker": items_per_call(stats_start, stats_before),
            "items_per_call_3_workers": items_per_call(stats_before, stats),
            "rps_1_worker": round(one.rate, 1),
            "rps_3_workers": round(three.rate, 1),
            "three_vs_one": round(three.rate / one.rate, 2) if one.rate else None,
            "workers_with_batches": f"{len(took)}/{len(stack.worker_hosts())}",
            "killed": "worker,api",
            "lost_under_kills": len(faulted.lost),
        }
        for phase in phases:
            for what in (phase.lost + phase.wrong)[:5]:
                print(f"compose-test: {what}", file=sys.stderr)
    finally:
        stack.run("down", "--volumes", "--remove-orphans")
    return counts


def main() -> int:
    counts = run()
    print("compose-test: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    workers_ok = counts.get("workers_with_batches", "0/0").split("/")
    ok = counts.get("lost") == 0 and counts.get("wrong") == 0 and workers_ok[0] == workers_ok[1] == "3"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
