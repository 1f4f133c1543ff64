"""The processes of the local stack and the exact command of each, derived from Settings.

Kept apart from any process manager so that supervisor's config, the tests and the
compose file can all be checked against one list.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from batchgate.settings import Settings

#: The repository root: every program runs from here (``api.wsgi``, ``workers.celery_entry``).
REPO = Path(__file__).resolve().parent.parent
#: Console scripts (gunicorn, celery) of the interpreter running us, i.e. the venv's.
BIN = Path(sys.executable).parent

#: gunicorn: seconds a worker gets to finish its requests on SIGTERM.
API_GRACEFUL_TIMEOUT_S = 5
#: gunicorn worker heartbeat timeout (gevent workers stay responsive during long-polls).
API_TIMEOUT_S = 60
#: Longer than nginx's upstream ``keepalive_timeout`` (60 s) so nginx, not gunicorn, closes
#: idle connections: otherwise nginx may reuse a connection gunicorn is closing.
API_KEEPALIVE_S = 75
#: Pending connections per API replica (the default of 2048 is fine; stated to be explicit).
API_BACKLOG = 2048
#: Worker warm shutdown finishes running batches; give it time before SIGKILL.
WORKER_STOP_WAIT_S = 60
#: Everything else stops within this on SIGTERM.
DEFAULT_STOP_WAIT_S = 10
#: Flower user when ``flower_auth`` is empty (the password is generated per run).
FLOWER_USER = "admin"


@dataclass(frozen=True)
class Program:
    """One long-running process: its name, command and how to stop it."""

    name: str
    argv: tuple[str, ...]
    #: Lower starts first and stops last.
    priority: int
    stop_wait_s: int = DEFAULT_STOP_WAIT_S
    #: Variables only this program gets (the others never see them: the Gemini key).
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)


def starts_simulator(settings: Settings) -> bool:
    """Start the embedded simulator unless real Gemini or another simulator is configured.

    ``always`` and ``never`` force it; ``auto`` starts it when the model URL is the
    embedded simulator's (or unset), so a test that points ``BATCHGATE_SIMULATOR_URL`` at
    a simulator of its own does not get a second one.
    """
    mode = settings.stack.start_simulator.strip().lower()
    if mode == "never":
        return False
    if mode == "always":
        return True
    if not settings.gemini.uses_simulator:
        return False
    configured = settings.gemini.simulator_url.rstrip("/")
    return not configured or configured == settings.gemini.embedded_simulator_url


def redis_port(settings: Settings) -> int:
    """The port of ``redis_url`` (Redis's default when the URL names none)."""
    return urlsplit(settings.broker.redis_url).port or 6379


def binary(name: str, *fallbacks: str) -> str:
    """Absolute path of a system binary (``/usr/sbin`` is not on a non-root PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if Path(candidate).is_file():
            return candidate
    return name


def programs(settings: Settings, run_dir: Path, *, start_redis: bool) -> list[Program]:
    """Every process of the local stack, in start order (Flower's auth is in ``flower_conf``)."""
    run_dir = run_dir.resolve()
    result: list[Program] = []
    if start_redis:
        result.append(Program("redis", redis_argv(settings, run_dir), priority=10))
    if starts_simulator(settings):
        argv = (sys.executable, "-m", "batching.simulator")
        result.append(Program("simulator", argv, priority=20))
    # Only the worker calls the model: the key is in its environment alone.
    secrets = {"GEMINI_API_KEY": settings.gemini.gemini_api_key} if settings.gemini.gemini_api_key else {}
    for index in range(1, settings.stack.worker_processes + 1):
        name, node = ("worker", "batch") if index == 1 else (f"worker-{index}", f"batch{index}")
        worker = worker_argv(settings, str(BIN / "celery"), node=f"{node}@%h")
        result.append(Program(name, worker, 30, WORKER_STOP_WAIT_S, environment=secrets))
    result.append(Program("beat", beat_argv(run_dir / "celerybeat-schedule", str(BIN / "celery")), 40))
    for port in settings.api.api_ports:
        result.append(Program(f"api-{port}", api_argv(settings, port, str(BIN / "gunicorn")), priority=50))
    flower = flower_argv("127.0.0.1", settings.stack.flower_port, str(BIN / "celery"), flower_conf(run_dir))
    result.append(Program("flower", flower, priority=60))
    result.append(Program("nginx", nginx_argv(run_dir), priority=70))
    return result


def redis_argv(settings: Settings, run_dir: Path) -> tuple[str, ...]:
    """Redis on loopback only: throw-away by default, or with an append-only file in the run
    folder (``BATCHGATE_REDIS_APPENDONLY``; fsync every second, and in full on shutdown).
    When ``redis_url`` carries a password, it is required (from ``redis_conf``: a file, so
    ``ps`` never shows it)."""
    exe = binary("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")
    port = str(redis_port(settings))
    aof = "yes" if settings.stack.redis_appendonly else "no"
    persistence = ("--save", "", "--appendonly", aof, "--appendfsync", "everysec")
    conf = (str(redis_conf(run_dir)),) if redis_credentials(settings) else ()
    return (exe, *conf, "--bind", "127.0.0.1", "--port", port, *persistence, "--dir", str(run_dir))


def redis_credentials(settings: Settings) -> tuple[str, str] | None:
    """(user, password) from ``redis_url`` (user ``default`` when it names none), or None."""
    parts = urlsplit(settings.broker.redis_url)
    if parts.password is None:
        return None
    return unquote(parts.username or "") or "default", unquote(parts.password)


def redacted_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and banners."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def redis_conf(run_dir: Path) -> Path:
    """The local Redis's config file, holding its password (written only when there is one)."""
    return run_dir.resolve() / "redis.conf"


def render_redis_conf(settings: Settings) -> str:
    """The password of ``redis_url`` as ``requirepass``, or as an ACL user of its own (every
    command and key) with the default user switched off."""
    credentials = redis_credentials(settings)
    if credentials is None:
        return ""
    user, password = credentials
    lines = ["# Rendered by stack.cluster: the local Redis's credentials for this run."]
    if user == "default":
        lines.append(f"requirepass {_redis_quote(password)}")
    else:
        lines += [
            f"user {_redis_quote(user)} on {_redis_quote('>' + password)} ~* &* +@all",
            "user default off",
        ]
    return "\n".join(lines) + "\n"


def _redis_quote(value: str) -> str:
    """A Redis config argument in double quotes (backslash escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def api_argv(settings: Settings, port: int, gunicorn: str = "gunicorn") -> tuple[str, ...]:
    """One API replica: gevent workers, because each long-poll holds a connection open."""
    return (
        gunicorn,
        "--worker-class",
        "gevent",
        "--workers",
        str(settings.api.api_workers),
        "--worker-connections",
        str(settings.api.api_worker_connections),
        "--bind",
        f"{settings.api.api_host}:{port}",
        "--backlog",
        str(API_BACKLOG),
        "--graceful-timeout",
        str(API_GRACEFUL_TIMEOUT_S),
        "--timeout",
        str(API_TIMEOUT_S),
        "--keep-alive",
        str(API_KEEPALIVE_S),
        # gunicorn >= 25 opens a control socket at one fixed path per user: replicas would
        # fight over it, and nothing here uses it.
        "--no-control-socket",
        "api.wsgi:app",
    )


def worker_argv(settings: Settings, celery: str = "celery", node: str = "batch@%h") -> tuple[str, ...]:
    """The batch consumer: pool, concurrency, prefetch, queues and task events come from the
    Celery app's own configuration (``workers.app.create_celery``); only the node name is set."""
    return (celery, "-A", "workers.celery_entry", "worker", "-n", node, "--loglevel", "INFO")


def beat_argv(schedule: Path | str, celery: str = "celery") -> tuple[str, ...]:
    """The periodic-task scheduler (queue-depth sampling), its state in ``schedule``."""
    return (celery, "-A", "workers.celery_entry", "beat", "--schedule", str(schedule), "--loglevel", "INFO")


def flower_conf(run_dir: Path) -> Path:
    """Flower's config file, holding its basic auth: a file, so ``ps`` never shows the password."""
    return run_dir.resolve() / "flowerconfig.py"


def render_flower_conf(auth: str) -> str:
    """Flower reads this Python file (``--conf``) before its command line."""
    return f"# Rendered by stack.cluster: Flower's basic auth for this run.\nbasic_auth = [{auth!r}]\n"


def flower_argv(address: str, port: int, celery: str = "celery", conf: Path | None = None) -> tuple[str, ...]:
    """Flower, with basic auth from ``conf`` (or ``FLOWER_BASIC_AUTH`` when there is none)."""
    argv = (celery, "-A", "workers.celery_entry", "flower", f"--address={address}", f"--port={port}")
    return argv if conf is None else (*argv, f"--conf={conf}")


def nginx_argv(run_dir: Path) -> tuple[str, ...]:
    """nginx on the rendered config; ``-e stderr`` keeps it off the root-owned default log."""
    exe = binary("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")
    return (exe, "-c", str(run_dir / "nginx.conf"), "-p", f"{run_dir}/", "-e", "stderr")
