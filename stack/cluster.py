"""The local stack under supervisor: Redis, simulator, API replicas, worker, beat, Flower, nginx.

``Cluster`` renders the configs into a run folder, runs ``supervisord`` in the background
and drives it over its control socket, for ``make run`` and for end-to-end tests alike.
``python -m stack.cluster run`` runs it in the foreground; ``render`` only writes configs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from supervisor.xmlrpc import SupervisorTransport

from batchgate.settings import Settings
from stack import procfs
from stack.nginx_config import local_layout, render_nginx, tls_dir
from stack.ports import port_in_use, probe, redis_answers
from stack.programs import (
    FLOWER_USER,
    REPO,
    Program,
    flower_conf,
    programs,
    redacted_url,
    redis_conf,
    redis_credentials,
    redis_port,
    render_flower_conf,
    render_redis_conf,
    starts_simulator,
)
from stack.supervisor_config import CONTROL_USER, render_supervisord, socket_path
from stack.tls import TlsError, ensure_self_signed

#: supervisord answers on its socket within this after being spawned.
CONTROL_SOCKET_TIMEOUT_S = 15.0
#: ``stop()`` waits this long for supervisord to stop everything (the worker's warm
#: shutdown may take up to its stopwaitsecs) before killing what is left.
STOP_TIMEOUT_S = 90.0
#: Hosts where we may start Redis ourselves when nothing answers.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", ""})
#: Lines of a log shown in an error.
TAIL_LINES = 30


class ClusterError(RuntimeError):
    """The stack cannot be started, or a program is not in the state asked for."""


class Cluster:
    """The local stack under one supervisord; a context manager that starts and stops it."""

    def __init__(self, settings: Settings, run_dir: Path, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.run_dir = Path(run_dir).resolve()
        #: Flower's ``user:password``: from settings, or generated once for this object.
        self.flower_auth = settings.stack.flower_auth or f"{FLOWER_USER}:{secrets.token_urlsafe(18)}"
        self.env = _child_env(env)
        self._control_password = secrets.token_urlsafe(18)
        self.starts_redis = False
        self._programs: list[Program] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    # --- configs ------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def programs(self) -> list[str]:
        """Names of the programs rendered (``redis``, ``simulator``, ``api-<port>``, …)."""
        return [program.name for program in self._programs]

    def render(self, *, start_redis: bool | None = None) -> list[Path]:
        """Write supervisord.conf, nginx.conf and Flower's config (Redis's too when it has a
        password); Redis only if none answers. With HTTPS on, a self-signed certificate is
        made in the run folder unless a valid one is there."""
        if start_redis is None:
            start_redis = not redis_answers(self.settings.broker.redis_url)
        self.starts_redis = start_redis
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._programs = programs(self.settings, self.run_dir, start_redis=start_redis)
        nginx_conf = self.run_dir / "nginx.conf"
        written = [self.conf_path, nginx_conf, flower_conf(self.run_dir)]
        if self.settings.stack.nginx_tls_port:
            try:
                pair, _ = ensure_self_signed(tls_dir(self.run_dir))
            except TlsError as exc:
                raise ClusterError(f"HTTPS (BATCHGATE_NGINX_TLS_PORT=0 turns it off): {exc}") from None
            written.append(pair.certificate)
        _write(self.conf_path, render_supervisord(self._programs, self.run_dir, self._control_password))
        _write(nginx_conf, render_nginx(self.settings, local_layout(self.settings, self.run_dir)))
        _write(flower_conf(self.run_dir), render_flower_conf(self.flower_auth))
        if start_redis and redis_credentials(self.settings):
            _write(redis_conf(self.run_dir), render_redis_conf(self.settings))
            written.append(redis_conf(self.run_dir))
        return written

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, *, echo: bool = False) -> None:
        """Render the configs and spawn supervisord; returns once it answers on its socket.

        ``echo`` sends supervisord's own event log (spawned, exited, …) to our stdout.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise ClusterError("this cluster is already running")
        _set_aside(self.logs_dir)
        self.render()
        if self.starts_redis and (urlsplit(self.settings.broker.redis_url).hostname or "") not in LOCAL_HOSTS:
            url = redacted_url(self.settings.broker.redis_url)
            raise ClusterError(f"nothing answers at {url}, and it is not local")
        self._check_binaries()
        self._check_ports()
        self._out = None if echo else (self.logs_dir / "supervisord.out").open("ab")
        argv = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf_path)]
        self._proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT if self._out else None,
            # Our own process group: a Ctrl-C meant for the caller reaches supervisord only
            # through ``stop()``, which stops the programs in order.
            start_new_session=True,
        )
        deadline = time.monotonic() + CONTROL_SOCKET_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                self.stop()
                raise ClusterError(f"supervisord exited at start:\n{self._supervisord_tail()}")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if self._rpc("getState")["statename"] == "RUNNING":
                    return
            if time.monotonic() >= deadline:
                self.stop()
                raise ClusterError("supervisord did not answer on its control socket")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll until ``/ready`` through nginx answers 200; fail early if a program is FATAL.

        Each replica's ``/health`` is polled directly first: probing nginx while the replicas
        still refuse connections would count as failures and keep them out for a while.
        """
        deadline = time.monotonic() + timeout
        starting = [url for name, url in self.urls().items() if name.startswith("api-")]
        last = "no answer"
        while True:
            self._raise_if_broken()
            if starting:
                starting = [url for url in starting if probe(f"{url}/health")[0] != 200]
                last = f"replicas starting: {' '.join(starting)}"
            else:
                status, last = probe(f"{self.urls()['api']}/ready")
                if status == 200:
                    return
            if time.monotonic() >= deadline:
                states = ", ".join(f"{name}={state}" for name, state in self.states().items())
                raise TimeoutError(f"stack not ready after {timeout}s (last: {last}); {states}")
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def is_ready(self) -> bool:
        """One probe of ``/ready`` through nginx."""
        return probe(f"{self.urls()['api']}/ready")[0] == 200

    def poll(self) -> int | None:
        """supervisord's exit status, or None while it runs."""
        return None if self._proc is None else self._proc.poll()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM supervisord (it stops every program, nginx first, Redis last) and wait until
        every process it started, and their process groups, are gone."""
        proc = self._proc
        if proc is None:
            return
        # Programs are group leaders (supervisor calls setpgrp): their groups hold every
        # process to wait for. Ask supervisord, and look for its children in case it cannot answer.
        groups = {p.pgrp for p in procfs.read_processes() if p.ppid == proc.pid}
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            groups |= {info["pid"] for info in self._rpc("getAllProcessInfo") if info["pid"]}
        deadline = time.monotonic() + timeout
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        while _alive_in_groups(groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pgid in _alive_in_groups(groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        killed_at = time.monotonic()
        while _alive_in_groups(groups) and time.monotonic() - killed_at < 5.0:
            time.sleep(0.05)
        self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- programs -----------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        """Every program's supervisor state (``RUNNING``, ``STARTING``, ``BACKOFF``, ``FATAL``, …)."""
        return {info["name"]: info["statename"] for info in self._call("getAllProcessInfo")}

    def state(self, name: str) -> str:
        return str(self._call("getProcessInfo", name)["statename"])

    def pid(self, name: str) -> int:
        """The running program's pid (its process group too); ClusterError if it is not running."""
        info = self._call("getProcessInfo", name)
        if info["statename"] != "RUNNING" or not info["pid"]:
            raise ClusterError(f"{name} is {info['statename']}, not RUNNING")
        return int(info["pid"])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the program's whole process group, as a crash would take down a
        master and its workers (killing only gunicorn's master leaves its worker holding the
        port for a second). supervisor then restarts it; returns the pid that was killed."""
        pid = self.pid(name)
        os.killpg(pid, sig)
        return pid

    def restart(self, name: str) -> None:
        """Stop ``name`` (if running) and start it again; returns once it is RUNNING."""
        self.stop_program(name)
        self.start_program(name)

    def stop_program(self, name: str) -> None:
        """Stop ``name`` as an operator would (if running); returns once it has exited."""
        try:
            self._rpc("stopProcess", name, True)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise ClusterError(f"supervisor cannot stop {name}: {fault.faultString}") from None
        except OSError as exc:
            raise ClusterError(f"supervisord is not answering: {exc}") from None

    def start_program(self, name: str) -> None:
        """Start ``name``; returns once it is RUNNING."""
        self._call("startProcess", name, True)

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def logs(self, name: str) -> str:
        """Everything ``name`` wrote (stdout and stderr) in this run; ``supervisord`` works too."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def urls(self) -> dict[str, str]:
        """Where everything answers: ``api`` (nginx), ``api_https`` (nginx, unless HTTPS is off),
        ``api-<port>``, ``simulator``, ``flower``, ``redis`` (its password masked)."""
        host = (
            "127.0.0.1" if self.settings.api.api_host in ("0.0.0.0", "::", "") else self.settings.api.api_host
        )
        urls = {"api": f"http://127.0.0.1:{self.settings.stack.nginx_port}"}
        if self.settings.stack.nginx_tls_port:
            urls["api_https"] = f"https://127.0.0.1:{self.settings.stack.nginx_tls_port}"
        urls.update({f"api-{port}": f"http://{host}:{port}" for port in self.settings.api.api_ports})
        if starts_simulator(self.settings):
            urls["simulator"] = self.settings.gemini.embedded_simulator_url
        elif self.settings.gemini.simulator_url:
            urls["simulator"] = self.settings.gemini.simulator_url
        urls["flower"] = f"http://127.0.0.1:{self.settings.stack.flower_port}"
        urls["redis"] = redacted_url(self.settings.broker.redis_url)
        return urls

    # --- internals ------------------------------------------------------------------------------

    def _rpc(self, method: str, *args: object) -> Any:
        """One XML-RPC call over the control socket, on a connection of its own (thread-safe)."""
        url = f"unix://{socket_path(self.run_dir)}"
        transport = SupervisorTransport(CONTROL_USER, self._control_password, url)
        try:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            return getattr(proxy.supervisor, method)(*args)
        finally:
            transport.close()

    def _call(self, method: str, *args: object) -> Any:
        try:
            return self._rpc(method, *args)
        except xmlrpc.client.Fault as fault:
            raise ClusterError(f"supervisor {method}{args}: {fault.faultString}") from None
        except OSError as exc:
            raise ClusterError(f"supervisord is not answering: {exc}") from None

    def _raise_if_broken(self) -> None:
        if self.poll() is not None:
            raise ClusterError(f"supervisord exited:\n{self._supervisord_tail()}")
        fatal = [name for name, state in self.states().items() if state == "FATAL"]
        if fatal:
            tails = "\n".join(f"--- {name} ---\n{_tail(self.log_path(name))}" for name in fatal)
            raise ClusterError(f"could not start {', '.join(fatal)}:\n{tails}")

    def _supervisord_tail(self) -> str:
        return "\n".join(_tail(self.logs_dir / name) for name in ("supervisord.out", "supervisord.log"))

    def _check_ports(self) -> None:
        settings = self.settings
        ports = {"nginx": ("127.0.0.1", settings.stack.nginx_port)}
        if settings.stack.nginx_tls_port:
            ports["nginx https"] = ("127.0.0.1", settings.stack.nginx_tls_port)
        ports["flower"] = ("127.0.0.1", settings.stack.flower_port)
        ports.update({f"api-{port}": (settings.api.api_host, port) for port in settings.api.api_ports})
        if "simulator" in self.programs:
            ports["simulator"] = (settings.simulator.host, settings.simulator.port)
        if self.starts_redis:
            ports["redis"] = ("127.0.0.1", redis_port(settings))
        taken = [f"{name} {host}:{port}" for name, (host, port) in ports.items() if port_in_use(host, port)]
        if taken:
            raise ClusterError(f"ports already in use: {', '.join(taken)} (another stack running?)")

    def _check_binaries(self) -> None:
        for program in self._programs:
            exe = program.argv[0]
            if not (Path(exe).is_file() and os.access(exe, os.X_OK)) and shutil.which(exe) is None:
                raise ClusterError(f"{program.name}: {exe} is not installed (make install installs it)")


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The programs' environment: ``env``, with output unbuffered so logs are current, and
    without the Gemini key (the worker's program gets it, and only it)."""
    return {**{k: v for k, v in env.items() if k != "GEMINI_API_KEY"}, "PYTHONUNBUFFERED": "1"}


def _write(path: Path, text: str) -> None:
    """Write a config readable by its owner only (Flower's holds a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _set_aside(logs_dir: Path) -> None:
    """Keep the previous run's logs as ``logs.previous`` so ``logs()`` shows only this run."""
    if logs_dir.is_dir() and any(logs_dir.iterdir()):
        previous = logs_dir.with_name("logs.previous")
        shutil.rmtree(previous, ignore_errors=True)
        logs_dir.rename(previous)


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.exists():
        return f"({path.name}: no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _alive_in_groups(pgids: set[int]) -> set[int]:
    """Which of ``pgids`` still have a live member."""
    return {p.pgrp for p in procfs.read_processes() if p.pgrp in pgids} if pgids else set()


if __name__ == "__main__":
    from stack.cluster_cli import main

    sys.exit(main())
