"""The compose stack, checked offline: the compose-spec schema, Debian's docker-compose, the
same commands as the local stack, the entrypoint, ``make`` targets."""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from batchgate.settings import Settings
from stack.compose_cli import prepare, read_env_file
from stack.container import BEAT_SCHEDULE, FLOWER_PORT, NGINX_RUN_DIR, PRINT_VARIABLE, ROLES, role_argv
from stack.nginx_config import (
    COMPOSE_API_PORT,
    COMPOSE_API_REPLICAS,
    COMPOSE_CERT_DIR,
    compose_layout,
    render_nginx,
)
from stack.programs import api_argv, beat_argv, flower_argv, nginx_argv, worker_argv
from tests.stack.stack_configs import DOCKER_COMPOSE, REPO

# --- compose and Dockerfile ----------------------------------------------------------------------


#: What docker-compose.yml requires from the environment (`make up` writes them to .env).
COMPOSE_ENV = {
    "REDIS_PASSWORD": "test-password",
    "BATCHGATE_FLOWER_AUTH": "ops:test",
    "POSTGRES_PASSWORD": "pg-password",
    "BATCHGATE_DEMO_API_KEY": "bg_demo",
}


def test_compose_file_validates_against_the_compose_spec() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    not Path(DOCKER_COMPOSE).is_file(),
    reason=f"{DOCKER_COMPOSE} is missing (Debian's docker-compose; make test installs it)",
)
def test_docker_compose_accepts_the_compose_file(tmp_path: Path) -> None:
    """Debian's docker-compose 1.29 (no engine needed for `config`) interpolates, merges the
    anchors and checks every service: the file itself, which has no top-level `name:` (1.29
    rejects it; `make up` passes `-p batchgate`)."""
    assert "name" not in YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **COMPOSE_ENV}
    # An empty .env of its own, so a developer's ./.env does not leak into the check.
    (tmp_path / ".env").write_text("")
    run = [DOCKER_COMPOSE, "--project-directory", str(tmp_path), "-f", str(REPO / "docker-compose.yml")]
    result = subprocess.run([*run, "config", "-q"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # The secrets compose requires are refused when missing, with a message saying which.
    for missing in COMPOSE_ENV:
        partial = {k: v for k, v in env.items() if k != missing}
        result = subprocess.run(
            [*run, "config", "-q"], capture_output=True, text=True, timeout=60, env=partial
        )
        assert result.returncode != 0 and missing in result.stderr, result.stderr
    # As resolved: Redis's password in the app's URL, the Gemini key in the worker alone.
    result = subprocess.run(
        [*run, "config"], capture_output=True, text=True, timeout=60, env={**env, "GEMINI_API_KEY": "AIza-k"}
    )
    resolved = YAML(typ="safe").load(result.stdout)["services"]
    assert resolved["api"]["environment"]["BATCHGATE_REDIS_URL"] == "redis://:test-password@redis:6379/0"
    with_password = {name for name, service in resolved.items() if "test-password" in json.dumps(service)}
    assert with_password == {"redis", "api", "worker", "beat", "flower"}
    assert [name for name, service in resolved.items() if "AIza-k" in json.dumps(service)] == ["worker"]


def test_compose_runs_the_same_commands_as_the_local_stack() -> None:
    compose = YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {
        "redis",
        "postgres",
        "simulator",
        "api",
        "worker",
        "beat",
        "flower",
        "nginx",
        "locust",
    }
    # Each app container runs `entrypoint.sh <role>`, which execs role_argv: the functions
    # `make run` takes its programs' commands from, with the container's addresses.
    for name in ("simulator", "api", "worker", "beat", "flower", "nginx"):
        assert services[name]["command"] == [name]
    defaults = Settings.from_env({})
    in_container = Settings.from_env({"BATCHGATE_API_HOST": "0.0.0.0"})
    assert role_argv("api", defaults) == api_argv(in_container, COMPOSE_API_PORT)
    assert role_argv("worker", defaults) == worker_argv(defaults)
    assert role_argv("beat", defaults) == beat_argv(BEAT_SCHEDULE)
    assert role_argv("flower", defaults) == flower_argv("0.0.0.0", FLOWER_PORT)
    assert role_argv("nginx", defaults) == nginx_argv(NGINX_RUN_DIR)
    assert role_argv("simulator", defaults) == ("python", "-m", "batching.simulator")
    assert services["api"]["deploy"]["replicas"] == COMPOSE_API_REPLICAS
    assert services["beat"]["deploy"]["replicas"] == 1
    assert (
        "deploy" not in services["worker"] or "replicas" not in services["worker"]["deploy"]
    )  # --scale worker=N
    assert (
        f"127.0.0.1:${{BATCHGATE_FLOWER_HOST_PORT:-{FLOWER_PORT}}}:{FLOWER_PORT}"
        in services["flower"]["ports"]
    )
    # Every long-running service says whether it does its job; the worker waits for the model.
    for name in ("redis", "postgres", "simulator", "api", "worker", "beat", "flower", "nginx"):
        assert "test" in services[name]["healthcheck"], name
    assert services["worker"]["depends_on"]["simulator"] == {"condition": "service_healthy"}
    assert "${BATCHGATE_FLOWER_AUTH:?" in services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    for name in ("api", "worker", "beat", "flower"):
        url = services[name]["environment"]["BATCHGATE_REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD:?") and url.endswith("@redis:6379/0")
    # Who needs no Redis gets no Redis password; nginx and the API agree on the limits.
    assert "REDIS_PASSWORD" not in json.dumps([services["nginx"], services["simulator"]])
    for name in ("MAX_BODY_BYTES", "MAX_WAIT_S"):
        assert (
            services["nginx"]["environment"][f"BATCHGATE_{name}"]
            == services["api"]["environment"][f"BATCHGATE_{name}"]
        )
    # The Gemini key goes to the worker alone.
    assert [name for name, service in services.items() if "GEMINI_API_KEY" in json.dumps(service)] == [
        "worker"
    ]

    # Redis: persistent, never evicting, with a password (in a file, not on a command line).
    redis_service = services["redis"]
    script = redis_service["command"][-1]
    for option in ("--appendonly yes", "--maxmemory-policy noeviction", "requirepass"):
        assert option in script
    assert "--requirepass" not in script and redis_service["user"] == "redis"
    assert redis_service["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "REDISCLI_AUTH" in " ".join(redis_service["healthcheck"]["test"])
    assert (
        any(volume.startswith("redisdata:") for volume in redis_service["volumes"])
        and "redisdata" in compose["volumes"]
    )

    # nginx: TLS from the mounted certificate folder, HTTP and HTTPS published.
    nginx = services["nginx"]
    assert f"./certs:{COMPOSE_CERT_DIR}:ro" in nginx["volumes"]
    assert set(nginx["ports"]) == {"${BATCHGATE_HTTP_PORT:-80}:8080", "${BATCHGATE_HTTPS_PORT:-443}:8443"}
    assert nginx["environment"]["BATCHGATE_NGINX_PORT"] == "8080"
    assert nginx["environment"]["BATCHGATE_NGINX_TLS_PORT"] == "${BATCHGATE_NGINX_TLS_PORT-8443}"
    assert "healthcheck" in nginx and "healthcheck" in services["api"]

    # User preferences: the API reaches PostgreSQL (a named volume) once it is healthy.
    postgres = services["postgres"]
    assert postgres["image"] == "${POSTGRES_IMAGE:-postgres:16-alpine}"
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "pgdata" in compose["volumes"]
    assert any(volume.startswith("pgdata:") for volume in postgres["volumes"])
    assert services["api"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert services["api"]["depends_on"]["postgres"] == {"condition": "service_healthy"}

    # The load test: Locust on the app image, only on request, over HTTPS verified against the
    # stack's certificate, writing its reports as the owner of ./loadtest/reports.
    locust = services["locust"]
    assert locust["build"]["target"] == "loadtest" and locust["profiles"] == ["loadtest"]
    assert locust["command"][:2] == ["-f", "loadtest/locustfile.py"]
    assert locust["command"][locust["command"].index("-H") + 1] == "https://nginx:8443"
    assert locust["environment"]["LOADTEST_CA_BUNDLE"] == "/etc/batchgate/ca.pem"
    assert locust["user"] == "${BATCHGATE_UID:-10001}:${BATCHGATE_GID:-10001}"

    dockerfile = (REPO / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for name in ("simulator", "api", "worker", "beat", "flower", "nginx", "locust"):
        assert services[name]["build"]["target"] in targets
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim}"
    # The base is a build argument (official by default); no `# syntax=` line (no frontend
    # image is pulled); pip's CA and configuration come as build secrets, never in a layer.
    assert "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE} AS app" in dockerfile
    assert not re.search(r"^# syntax=", dockerfile, re.M) and "--mount=type=secret,id=pip_ca" in dockerfile
    assert re.search(r"^STOPSIGNAL SIGQUIT$", dockerfile, re.M)
    assert (
        'ENTRYPOINT ["/app/entrypoint.sh"]' in dockerfile
        and "COPY --chmod=755 entrypoint.sh ./" in dockerfile
    )
    # The dashboard comes prebuilt with api/ (checked in): no Node stage, no Node in the image.
    assert not re.search(r"^FROM node:", dockerfile, re.M) and "npm" not in dockerfile
    assert "COPY api/ api/" in dockerfile
    # The app image (api, worker, beat, flower, simulator, migrate) runs as an unprivileged
    # user; nginx's master stays root to read the mounted key, its workers drop to that user.
    stages = dict(re.findall(r"^FROM \S+ AS (\S+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S))
    assert re.findall(r"^USER (\S+)$", stages["app"], re.M)[-1] == "batchgate"
    assert dockerfile.rstrip().splitlines()[-1] == "FROM app"  # the default target
    layout = compose_layout(defaults, NGINX_RUN_DIR, worker_user="batchgate")
    assert "\nuser batchgate batchgate;\n" in render_nginx(defaults, layout)
    # Secrets and certificates never go into the build context.
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"certs", ".env"} <= set(ignored)
    assert "api/dashboard/dist" not in ignored  # the image serves the checked-in bundle


def test_entrypoint_runs_each_role_with_the_local_stacks_command(tmp_path: Path) -> None:
    script = (REPO / "entrypoint.sh").read_text()
    listed = re.search(r"^\s*(api \|.*)\)$", script, re.M)
    assert listed is not None and tuple(r.strip() for r in listed.group(1).split("|")) == ROLES
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        PRINT_VARIABLE: "1",
        "BATCHGATE_WORKER_CONCURRENCY": "5",
    }

    def entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(REPO / "entrypoint.sh"), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    settings = Settings.from_env({"BATCHGATE_WORKER_CONCURRENCY": "5"})
    for role in ROLES:
        if role == "health":
            continue
        result = entrypoint(role, "--extra")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [*role_argv(role, settings), "--extra"]
    # A health check fails when its role does not do its job (here: no simulator listens).
    assert entrypoint("health", "simulator").returncode == 1
    # Anything else runs as given; nothing at all is a usage error.
    assert entrypoint("echo", "as", "given").stdout == "as given\n"
    assert entrypoint().returncode == 2
    assert os.access(REPO / "entrypoint.sh", os.X_OK)


def test_compose_prepare_makes_certificates_and_secrets_only_when_missing(tmp_path: Path) -> None:
    made = prepare(tmp_path, {})
    assert len(made) == 2
    env = read_env_file(tmp_path / ".env")
    assert set(env) == {
        "REDIS_PASSWORD",
        "BATCHGATE_FLOWER_AUTH",
        "POSTGRES_PASSWORD",
        "BATCHGATE_DEMO_API_KEY",
        "BATCHGATE_UID",
        "BATCHGATE_GID",
    } and env["BATCHGATE_FLOWER_AUTH"].startswith("admin:")
    for name in ("REDIS_PASSWORD", "POSTGRES_PASSWORD"):  # URL-safe: they go into URLs
        assert re.fullmatch(r"[A-Za-z0-9_-]{24,}", env[name])
    assert env["BATCHGATE_DEMO_API_KEY"].startswith("bg_") and env["BATCHGATE_UID"] == str(os.getuid())
    assert (tmp_path / "loadtest" / "reports").is_dir()  # made by its owner, not by Docker as root
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert (tmp_path / "certs" / "fullchain.pem").is_file()
    assert stat.S_IMODE((tmp_path / "certs" / "privkey.pem").stat().st_mode) == 0o600
    # Nothing present is replaced; what the environment sets is not written.
    certificate = (tmp_path / "certs" / "fullchain.pem").read_bytes()
    assert prepare(tmp_path, {}) == []
    assert (tmp_path / "certs" / "fullchain.pem").read_bytes() == certificate
    assert read_env_file(tmp_path / ".env") == env
    other = tmp_path / "other"
    other.mkdir()
    prepare(other, {"REDIS_PASSWORD": "from-the-shell"})
    assert "REDIS_PASSWORD" not in read_env_file(other / ".env")


def test_makefile_lists_the_project_targets() -> None:
    result = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  (\S+)", result.stdout, re.M))
    assert {"install", "run", "test", "lint", "format", "clean", "loadtest", "bench", "scaletest"} <= listed
