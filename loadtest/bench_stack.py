"""A throw-away local stack for a benchmark phase: its own ports, Redis, run folder and keys.

Everything is started and stopped through ``stack.cluster.Cluster`` (supervisor), as
``make run`` does; the benchmark drives it over HTTP and reaches into its Redis only to
create keys in named tenants and to see whether it has drained. The scale-out test asks for
more worker programs (``worker-2`` …) through ``BATCHGATE_WORKER_PROCESSES``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import redis

from batchgate.apikeys import ApiKeyStore, new_key
from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from stack.cluster import Cluster
from stack.ports import isolated_stack_env

#: Limits raised out of the benchmark's way: it measures the pipeline, not the edge policy.
EDGE_OUT_OF_THE_WAY = {
    "BATCHGATE_TIER_PREMIUM_RATE": "1000000",
    "BATCHGATE_TIER_PREMIUM_BURST": "1000000",
    "BATCHGATE_QUEUE_HIGH_WATER": "1000000",
    "BATCHGATE_QUEUE_LOW_WATER": "900000",
    # Per tenant; the bench's closed-loop clients hold one task each, far fewer than this.
    "BATCHGATE_TIER_PREMIUM_MAX_IN_FLIGHT": "1000000",
}
#: Settings the benchmark owns (ports, Redis, folders, key): never taken from the caller's shell.
INFRASTRUCTURE = frozenset(
    {
        "BATCHGATE_REDIS_URL",
        "BATCHGATE_KEY_PREFIX",
        "BATCHGATE_QUEUE",
        "BATCHGATE_API_PORTS",
        "BATCHGATE_NGINX_PORT",
        "BATCHGATE_NGINX_TLS_PORT",
        "BATCHGATE_FLOWER_PORT",
        "BATCHGATE_FLOWER_AUTH",
        "BATCHGATE_SIM_HOST",
        "BATCHGATE_SIM_PORT",
        "BATCHGATE_SIMULATOR_URL",
        "BATCHGATE_START_SIMULATOR",
        "BATCHGATE_RUN_DIR",
        "BATCHGATE_DEMO_API_KEY",
        "BATCHGATE_WORKER_PROCESSES",
    }
)
#: Stack processes counted as the stack's own CPU (the issue's list); the rest are reported apart.
STACK_GROUPS = ("nginx", "api", "redis", "worker", "beat")


#: How long a stack whose measurement is over may take to stop before it is killed.
MEASURED_STOP_S = 3.0


def caller_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``BATCHGATE_*`` settings from the caller's environment, minus the infrastructure ones.

    So ``BATCHGATE_FLUSH_MODE=window make bench`` benchmarks window mode.
    """
    return {k: v for k, v in environ.items() if k.startswith("BATCHGATE_") and k not in INFRASTRUCTURE}


def stack_env(
    run_dir: Path,
    *,
    api_replicas: int = 3,
    settings: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a fresh stack: free ports, its own Redis, a premium demo key.

    ``settings`` (``BATCHGATE_*``) win over the edge defaults; ``base`` (default ``os.environ``)
    gives everything else, without its ``BATCHGATE_*`` and ``GEMINI_API_KEY``.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("BATCHGATE_") and k != "GEMINI_API_KEY"}
    env.update(EDGE_OUT_OF_THE_WAY)
    env.update(settings or {})
    # Its Redis is started by the Cluster (counted as the stack's own CPU).
    env.update(isolated_stack_env(run_dir, api_replicas))
    env["BATCHGATE_FLOWER_AUTH"] = f"bench:{new_key()}"
    return env


class Stack:
    """One running stack: where it answers, its key, and the pids of its programs."""

    def __init__(
        self, run_dir: Path, env: Mapping[str, str], *, worker_processes: int = 1, ready_timeout: float = 90.0
    ) -> None:
        self.run_dir = run_dir
        self.env = {**env, "BATCHGATE_WORKER_PROCESSES": str(worker_processes)}
        self.settings = Settings.from_env(self.env)
        self.cluster = Cluster(self.settings, run_dir, self.env)
        self.url = f"http://127.0.0.1:{self.settings.stack.nginx_port}"
        self.sim_url = self.settings.gemini.embedded_simulator_url
        self.api_key = self.settings.edge.demo_api_key
        self._ready_timeout = ready_timeout
        self._tenant_keys: list[str] = []

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.broker.redis_url, decode_responses=True)

    def tenant_keys(self, tenants: int) -> list[str]:
        """Premium keys (the demo key's raised limits), one in each of the tenants ``bench-1``
        … ``bench-<tenants>``; created on first use, and kept for later phases."""
        if len(self._tenant_keys) < tenants:
            store = ApiKeyStore(self._redis(), self.settings.broker.key_prefix)
            self._tenant_keys += [
                store.create("premium", f"bench tenant {n}", tenant=f"bench-{n}")
                for n in range(len(self._tenant_keys) + 1, tenants + 1)
            ]
        return self._tenant_keys[:tenants]

    def wait_drained(self, timeout: float, interval: float = 0.2) -> int:
        """Wait until no task is queued or running (the in-flight index is empty), at most
        ``timeout`` seconds: what a cancelled load left behind. The tasks still in flight."""
        client = self._redis()
        key = TaskStore(client, self.settings.broker.key_prefix, self.settings.broker.task_ttl_s).inflight_key
        deadline = time.monotonic() + timeout
        while (left := int(client.zcard(key))) and time.monotonic() < deadline:
            time.sleep(interval)
        return left

    def start(self) -> Stack:
        """Start every program and wait until ``/ready`` answers through nginx."""
        self.cluster.start()
        try:
            self.cluster.wait_ready(self._ready_timeout)
        except BaseException:
            self.cluster.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every program (Redis last) and wait until they are gone."""
        self.cluster.stop()

    def stop_in_background(self) -> threading.Thread:
        """Stop in a thread, so the next stack can start meanwhile; join it before measuring.

        Its measurement is over, so nothing left in it matters: what has not stopped after
        ``MEASURED_STOP_S`` (a worker finishing a backlog at the paced rate takes 20 s) is killed.
        """
        thread = threading.Thread(
            target=self.cluster.stop, args=(MEASURED_STOP_S,), name=f"stop {self.run_dir.name}", daemon=True
        )
        thread.start()
        return thread

    def process_groups(self) -> dict[str, list[int]]:
        """Process-group ids per kind of process: ``api`` (every replica), ``worker`` (every
        worker process), ``nginx``, ``redis``, ``beat``, ``flower``, ``simulator``, and
        ``supervisord`` (its own pid only)."""
        groups: dict[str, list[int]] = {}
        for name, state in self.cluster.states().items():
            if state != "RUNNING":
                continue
            kind = "api" if name.startswith("api-") else "worker" if name.startswith("worker") else name
            groups.setdefault(kind, []).append(self.cluster.pid(name))
        pidfile = self.run_dir / "supervisord.pid"
        if pidfile.exists():
            groups["supervisord"] = [int(pidfile.read_text().strip())]
        return groups
