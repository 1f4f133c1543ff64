"""Real processes on free ports for integration tests: Redis, simulator, worker, API.

Every process is a real server started as a subprocess with its own log file; waits are
polls with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from stack.ports import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # a server not up yet
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def first_call_fails_seed(error_rate: float) -> int:
    """A simulator seed whose first fault draw fails the first call.

    With few packed calls a 5 % error rate may inject nothing; this seed guarantees at
    least one injected error, while the rest of the sequence stays random.
    """
    return next(seed for seed in range(10_000) if random.Random(seed).random() < error_rate)


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without batchgate/Gemini settings, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHGATE_") and k != "GEMINI_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def http_json(
    method: str, url: str, body: Any = None, timeout: float = 10.0, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    """One HTTP request; returns (status, headers, decoded JSON body or raw text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode(errors="replace")


class Process:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv, cwd=REPO, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the whole process group (nothing if it has exited)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        self.send(sig)
        if self.alive():
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def start_redis(log_dir: Path) -> tuple[Process, str]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise RuntimeError("redis-server is not installed (make test installs it)")
    port = free_port()
    argv = [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(log_dir)]
    proc = Process(f"redis-{port}", argv, clean_env(), log_dir)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: redis.Redis.from_url(url).ping(), 10, "redis")
    return proc, url


def start_simulator(log_dir: Path, env: Mapping[str, str]) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        f"simulator-{port}",
        [sys.executable, "-m", "batching.simulator"],
        {**env, "BATCHGATE_SIM_PORT": str(port)},
        log_dir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_json("GET", f"{url}/health")[0] == 200, 15, "simulator")
    return proc, url


def start_worker(log_dir: Path, env: Mapping[str, str], name: str = "worker") -> Process:
    # Pool, concurrency, prefetch, queues and task events come from the app's configuration,
    # as for the local cluster's worker.
    argv = [str(BIN / "celery"), "-A", "workers.celery_entry", "worker", "-n", f"{name}-{free_port()}@%h"]
    argv += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    return Process(name, argv, env, log_dir)


def start_beat(log_dir: Path, env: Mapping[str, str], name: str = "beat") -> Process:
    """Celery beat: schedules the periodic tasks (metrics snapshot, queue-depth sample)."""
    schedule = log_dir / f"{name}-{free_port()}-schedule"
    argv = [str(BIN / "celery"), "-A", "workers.celery_entry", "beat", "--schedule", str(schedule)]
    return Process(name, [*argv, "--loglevel", "INFO"], env, log_dir)


def start_api(log_dir: Path, env: Mapping[str, str], name: str = "api") -> tuple[Process, str]:
    port = free_port()
    argv = [
        str(BIN / "gunicorn"),
        "--worker-class",
        "gevent",
        "--workers",
        "1",
        "--worker-connections",
        "1000",
    ]
    argv += ["--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2", "--no-control-socket", "api.wsgi:app"]
    proc = Process(f"{name}-{port}", argv, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_json("GET", f"{url}/health")[0] == 200, 20, "api")
    return proc, url


def start_flower(log_dir: Path, env: Mapping[str, str], auth: str) -> tuple[Process, str]:
    """Flower on loopback with basic auth ``user:password`` (from the environment, not argv)."""
    port = free_port()
    argv = [str(BIN / "celery"), "-A", "workers.celery_entry", "flower", "--address=127.0.0.1"]
    argv += [f"--port={port}"]
    flower_env = {k: v for k, v in env.items() if not k.startswith("FLOWER_")}
    flower_env["FLOWER_BASIC_AUTH"] = auth
    proc = Process(f"flower-{port}", argv, flower_env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_json("GET", f"{url}/healthcheck")[0] == 200, 30, "flower")
    return proc, url


def stop_all(*processes: Process | None) -> None:
    """Stop processes together: all are told at once, then each is waited for (a worker's warm
    shutdown and gunicorn's graceful one take seconds each; in turn they add up)."""
    started = [p for p in processes if p is not None]
    for proc in started:
        proc.send()
    for proc in started:
        proc.stop()


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        stop_all(*reversed(processes))
