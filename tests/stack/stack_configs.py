"""What the config tests of the local stack and of compose share: non-default settings and
the stack they render."""

import shlex
import shutil
from pathlib import Path

from supervisor.options import ServerOptions

from batchgate.settings import Settings
from stack.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DOCKER_COMPOSE = "/usr/bin/docker-compose"

ENV = {
    "BATCHGATE_REDIS_URL": "redis://127.0.0.1:6411/0",
    "BATCHGATE_API_PORTS": "9301,9302,9303",
    "BATCHGATE_NGINX_PORT": "9380",
    "BATCHGATE_NGINX_TLS_PORT": "9343",
    "BATCHGATE_FLOWER_PORT": "9355",
    "BATCHGATE_SIM_PORT": "9390",
    "BATCHGATE_QUEUE": "q-test",
    "BATCHGATE_WORKER_CONCURRENCY": "3",
    "BATCHGATE_BATCH_MAX_SIZE": "10",
    "BATCHGATE_MAX_BODY_BYTES": "2048",
    "BATCHGATE_MAX_WAIT_S": "40",
}
PROGRAMS = {"redis", "simulator", "worker", "beat", "api-9301", "api-9302", "api-9303", "flower", "nginx"}


def make_cluster(run_dir: Path, **overrides: str) -> Cluster:
    env = {**ENV, **overrides}
    return Cluster(Settings.from_env(env), run_dir, env)


def supervisor_commands(conf: Path) -> dict[str, list[str]]:
    """Each program's argv exactly as supervisord will run it (after its ``%`` expansion)."""
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    return {
        process.name: shlex.split(process.command)
        for group in options.process_group_configs
        for process in group.process_configs
    }
