"""What each compose container runs: ``entrypoint.sh <role> [args…]`` execs ``role_argv``.

The commands come from the same functions as ``make run``'s programs (stack/programs.py),
with the container's addresses, so the local stack and compose cannot drift apart. Settings
come from the container's environment; extra arguments are appended to the command.
``BATCHGATE_ENTRYPOINT_PRINT=1`` prints the command as JSON instead of running it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis

from batchgate.keys import workers_key
from batchgate.settings import Settings, SettingsError
from stack.nginx_config import COMPOSE_API_PORT, COMPOSE_CERT_DIR, compose_layout, render_nginx
from stack.programs import api_argv, beat_argv, flower_argv, nginx_argv, worker_argv
from stack.tls import certificate_pair, ensure_self_signed

#: Names the compose stack's self-signed certificate is valid for: the host, and the nginx
#: service inside the compose network (the load test verifies it there).
COMPOSE_HOSTNAMES = ("localhost", "nginx")

#: The roles ``entrypoint.sh`` knows (its ``case`` lists the same).
ROLES = ("api", "worker", "beat", "flower", "simulator", "nginx", "migrate", "health")
#: Beat's schedule: the app image is read-only but for /tmp.
BEAT_SCHEDULE = "/tmp/celerybeat-schedule"
#: Flower's port in its container (published on the host's loopback only).
FLOWER_PORT = 5555
#: nginx's rendered config, pid and temp folders.
NGINX_RUN_DIR = Path("/tmp/nginx")
#: Set to 1: print the command instead of running it (tests, debugging).
PRINT_VARIABLE = "BATCHGATE_ENTRYPOINT_PRINT"
#: The image's unprivileged user (Dockerfile): nginx's workers run as it.
IMAGE_USER = "batchgate"


def role_argv(role: str, settings: Settings) -> tuple[str, ...]:
    """The command of ``role`` in its container (executables found on PATH)."""
    if role == "api":
        return api_argv(
            dataclasses.replace(settings, api=dataclasses.replace(settings.api, api_host="0.0.0.0")),
            COMPOSE_API_PORT,
        )
    if role == "worker":
        return worker_argv(settings)
    if role == "beat":
        return beat_argv(BEAT_SCHEDULE)
    if role == "flower":
        # Basic auth from FLOWER_BASIC_AUTH (compose requires it).
        return flower_argv("0.0.0.0", FLOWER_PORT)
    if role == "simulator":
        return ("python", "-m", "batching.simulator")
    if role == "nginx":
        return nginx_argv(NGINX_RUN_DIR)
    if role == "migrate":
        return ("python", "-m", "api.database_cli", "migrate")
    raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")


def prepare(role: str, settings: Settings) -> None:
    """What a role needs before its command runs: nginx's config, rendered from settings.

    nginx's master starts as root (its image's user) only to read the mounted private key,
    which is usually readable by root alone; its workers, which handle every connection,
    run as the image's unprivileged user."""
    if role == "nginx":
        NGINX_RUN_DIR.mkdir(parents=True, exist_ok=True)
        worker_user = IMAGE_USER if os.geteuid() == 0 else None
        cert_dir = Path(COMPOSE_CERT_DIR)
        if settings.stack.nginx_tls_port and not certificate_pair(cert_dir).certificate.is_file():
            # `docker compose up` without `make up`: serve HTTPS with a certificate of its own
            # rather than restart forever; `make up` (or your own) puts one in ./certs.
            cert_dir = NGINX_RUN_DIR / "certs"
            ensure_self_signed(cert_dir, hostnames=COMPOSE_HOSTNAMES)
            print(
                f"batchgate: no certificate in {COMPOSE_CERT_DIR}; serving a self-signed one", file=sys.stderr
            )
        layout = compose_layout(settings, NGINX_RUN_DIR, cert_dir=str(cert_dir), worker_user=worker_user)
        (NGINX_RUN_DIR / "nginx.conf").write_text(render_nginx(settings, layout))


#: Beat writes its schedule at start and every 3 minutes (Celery's sync interval).
BEAT_SYNC_MAX_AGE_S = 400.0


def healthy(role: str, settings: Settings) -> bool:
    """Whether this container's ``role`` does its job (compose's health checks): a worker beats
    in Redis, beat keeps its schedule, Flower and the simulator answer."""
    if role == "worker":
        client = redis.Redis.from_url(settings.broker.redis_url, socket_timeout=2, decode_responses=True)
        alive_since = time.time() - settings.broker.worker_heartbeat_ttl_s  # what /ready counts as alive
        beats = client.zrangebyscore(workers_key(settings.broker.key_prefix), alive_since, "+inf")
        return any(str(name).endswith("@" + socket.gethostname()) for name in beats)
    if role == "beat":
        schedules = list(Path(BEAT_SCHEDULE).parent.glob(Path(BEAT_SCHEDULE).name + "*"))
        return any(time.time() - path.stat().st_mtime < BEAT_SYNC_MAX_AGE_S for path in schedules)
    urls = {
        "flower": f"http://127.0.0.1:{FLOWER_PORT}/healthcheck",
        "simulator": f"http://127.0.0.1:{settings.simulator.port}/health",
    }
    try:
        with urllib.request.urlopen(urls[role], timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, KeyError):
        return False


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``python -m stack.container <role> [args…]``: replace this process with the role's."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    if not args or args[0] not in ROLES:
        print(f"usage: entrypoint.sh {{{'|'.join(ROLES)}}} [args…]", file=sys.stderr)
        return 2
    role, extra = args[0], args[1:]
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(f"batchgate: bad setting: {exc}", file=sys.stderr)
        return 2
    if role == "health":
        return 0 if extra and healthy(extra[0], settings) else 1
    command = [*role_argv(role, settings), *extra]
    if env.get(PRINT_VARIABLE) == "1":
        print(json.dumps(command))
        return 0
    prepare(role, settings)
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
