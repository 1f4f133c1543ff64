"""Configs of the local stack and of compose, rendered for non-default ports and checked by
the tools that read them: configparser and supervisor's own parser, ``nginx -t`` (and a
real nginx in front of fake replicas), and the compose-spec schema."""

from __future__ import annotations

import configparser
import contextlib
import json
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from supervisor.options import ServerOptions

from batchgate.cluster import Cluster, ClusterError, port_in_use
from batchgate.nginx_config import (
    COMPOSE_API_PORT,
    COMPOSE_API_REPLICAS,
    TemplateError,
    compose_layout,
    fill,
    local_layout,
    render_nginx,
)
from batchgate.programs import api_argv, beat_argv, flower_argv, worker_argv
from batchgate.settings import Settings
from batchgate.supervisor_config import socket_path

REPO = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

ENV = {
    "BATCHGATE_REDIS_URL": "redis://127.0.0.1:6411/0",
    "BATCHGATE_API_PORTS": "9301,9302,9303",
    "BATCHGATE_NGINX_PORT": "9380",
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


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    cluster = make_cluster(tmp_path / "run")
    cluster.render(start_redis=True)
    return cluster


def supervisor_commands(conf: Path) -> dict[str, list[str]]:
    """Each program's argv exactly as supervisord will run it (after its ``%`` expansion)."""
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    return {
        process.name: shlex.split(process.command)
        for group in options.process_group_configs
        for process in group.process_configs
    }


# --- supervisord.conf ------------------------------------------------------------------------


def test_supervisord_conf_has_one_restarting_program_per_process(cluster: Cluster) -> None:
    parser = configparser.RawConfigParser()
    parser.read(cluster.conf_path)
    programs = {section.removeprefix("program:") for section in parser if section.startswith("program:")}
    assert programs == PROGRAMS == set(cluster.programs)
    assert parser["supervisord"]["nodaemon"] == "true"
    assert Path(parser["unix_http_server"]["file"]) == cluster.run_dir / "supervisor.sock"
    assert parser["supervisorctl"]["serverurl"] == f"unix://{cluster.run_dir / 'supervisor.sock'}"
    for name in PROGRAMS:
        section = parser[f"program:{name}"]
        assert section["autorestart"] == "true"
        assert section["stopsignal"] == "TERM"
        assert section["stopasgroup"] == section["killasgroup"] == "true"
        assert int(section["startsecs"]) <= 2
        assert int(section["stopwaitsecs"]) >= 5
        assert Path(section["stdout_logfile"]) == cluster.logs_dir / f"{name}.log"
    # Start order: Redis first, nginx last (and so stopped first).
    priority = {name: int(parser[f"program:{name}"]["priority"]) for name in PROGRAMS}
    assert min(priority, key=priority.__getitem__) == "redis"
    assert max(priority, key=priority.__getitem__) == "nginx"
    assert stat.S_IMODE(cluster.conf_path.stat().st_mode) == 0o600


def test_supervisor_runs_the_commands_of_each_process(cluster: Cluster) -> None:
    commands = supervisor_commands(cluster.conf_path)
    run_dir = str(cluster.run_dir)

    redis = commands["redis"]
    assert redis[redis.index("--port") + 1] == "6411"
    assert redis[redis.index("--save") + 1] == ""
    assert redis[redis.index("--dir") + 1] == run_dir

    assert commands["simulator"][-2:] == ["-m", "batching.simulator"]
    assert Settings.from_env(cluster.env).model_base_url == "http://127.0.0.1:9390"

    for port in (9301, 9302, 9303):
        api = commands[f"api-{port}"]
        assert Path(api[0]).name == "gunicorn" and api[-1] == "api.wsgi:app"
        assert api[api.index("--worker-class") + 1] == "gevent"
        assert api[api.index("--bind") + 1] == f"127.0.0.1:{port}"

    worker = commands["worker"]
    assert worker[1:5] == ["-A", "workers.celery_entry", "worker", "-P"]
    assert worker[worker.index("-c") + 1] == "3"
    assert worker[worker.index("--prefetch-multiplier") + 1] == "11"
    assert worker[worker.index("-Q") + 1] == "q-test,q-test.housekeeping"
    assert worker[worker.index("-n") + 1] == "batch@%h"
    assert "-E" in worker

    beat = commands["beat"]
    assert beat[beat.index("--schedule") + 1] == f"{run_dir}/celerybeat-schedule"

    flower = commands["flower"]
    assert "--address=127.0.0.1" in flower and "--port=9355" in flower
    conf = Path(next(arg for arg in flower if arg.startswith("--conf=")).removeprefix("--conf="))
    assert repr(cluster.flower_auth) in conf.read_text()
    assert cluster.flower_auth not in " ".join(flower)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600

    assert commands["nginx"][1:] == ["-c", f"{run_dir}/nginx.conf", "-p", f"{run_dir}/", "-e", "stderr"]


def test_flower_auth_from_settings_or_generated_once(tmp_path: Path) -> None:
    given = make_cluster(tmp_path / "a", BATCHGATE_FLOWER_AUTH="ops:s3cret")
    assert given.flower_auth == "ops:s3cret"
    generated = make_cluster(tmp_path / "b")
    user, _, password = generated.flower_auth.partition(":")
    assert user == "admin" and len(password) >= 16
    generated.render(start_redis=False)
    generated.render(start_redis=False)
    assert repr(generated.flower_auth) in (tmp_path / "b" / "flowerconfig.py").read_text()
    assert make_cluster(tmp_path / "c").flower_auth != generated.flower_auth


@pytest.mark.parametrize(
    ("overrides", "simulator"),
    [
        ({}, True),
        ({"BATCHGATE_START_SIMULATOR": "never"}, False),
        ({"GEMINI_API_KEY": "key"}, False),
        ({"BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:9999"}, False),
        ({"BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:9390/"}, True),
        ({"BATCHGATE_START_SIMULATOR": "always", "BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:9999"}, True),
    ],
)
def test_optional_programs(tmp_path: Path, overrides: dict[str, str], simulator: bool) -> None:
    cluster = make_cluster(tmp_path / "run", **overrides)
    cluster.render(start_redis=False)
    assert "redis" not in cluster.programs
    assert ("simulator" in cluster.programs) is simulator


def test_control_socket_path_fits_a_unix_socket(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    assert len(str(socket_path(deep))) <= 100
    assert socket_path(deep) == socket_path(deep)
    assert socket_path(tmp_path) == tmp_path.resolve() / "supervisor.sock"


def test_start_refuses_ports_in_use_before_spawning_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = make_cluster(tmp_path / "run", BATCHGATE_NGINX_PORT=str(port))
        with pytest.raises(ClusterError, match=f"nginx 127.0.0.1:{port}"):
            cluster.start()
    assert cluster.poll() is None and not (tmp_path / "run" / "logs" / "supervisord.log").exists()
    assert not port_in_use("127.0.0.1", port)


# --- nginx -------------------------------------------------------------------------------------


def nginx_test(conf: Path, prefix: Path) -> None:
    result = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", f"{prefix}/", "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_rendered_nginx_conf_passes_nginx_t(cluster: Cluster) -> None:
    nginx_test(cluster.run_dir / "nginx.conf", cluster.run_dir)


def test_nginx_conf_proxies_to_every_replica(cluster: Cluster) -> None:
    text = (cluster.run_dir / "nginx.conf").read_text()
    assert "{{" not in text
    upstream = re.search(r"upstream batchgate_api \{(.*?)\n    \}", text, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server (\S+) max_fails=\d+ fail_timeout=\d+s;", upstream.group(1), re.M)
    assert servers == ["127.0.0.1:9301", "127.0.0.1:9302", "127.0.0.1:9303"]
    assert "least_conn;" in upstream.group(1) and "keepalive 512;" in upstream.group(1)
    directives = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "listen 127.0.0.1:9380 backlog=4096;" in directives
    assert "client_max_body_size 2048;" in directives
    assert "proxy_read_timeout 85s;" in directives  # max_wait_s 40 + margin
    assert "proxy_connect_timeout 2s;" in directives
    assert "proxy_http_version 1.1;" in directives and 'proxy_set_header Connection "";' in directives
    assert "proxy_next_upstream error timeout http_502 http_504;" in directives
    assert not [line for line in directives if "non_idempotent" in line]
    assert directives.count("proxy_buffering off;") == 2
    for path in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{path}_temp_path" in text and f'"{cluster.run_dir}/nginx_{path}_temp";' in text


def test_compose_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    # nginx -t resolves upstream names: test the compose layout against a resolvable host.
    layout = compose_layout(settings, tmp_path, api_host="127.0.0.1")
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(settings, layout))
    nginx_test(conf, tmp_path)
    text = render_nginx(settings, compose_layout(settings, tmp_path))
    assert f"server api:{COMPOSE_API_PORT} " in text
    assert f"proxy_next_upstream_tries {COMPOSE_API_REPLICAS};" in text
    assert "listen 0.0.0.0:8080 " in text


def test_template_and_values_must_match() -> None:
    assert fill("a {{ x }} b {{y}}", {"x": "1", "y": "2"}) == "a 1 b 2"
    with pytest.raises(TemplateError, match="no value"):
        fill("{{ x }}", {})
    with pytest.raises(TemplateError, match="lacks"):
        fill("nothing", {"x": "1"})
    with pytest.raises(TemplateError, match="cannot be given"):
        render_nginx(Settings.from_env({}), local_layout(Settings.from_env({}), Path("/tmp/$x")))


# --- nginx running in front of fake replicas ------------------------------------------------------


class ScriptedUpstream(ThreadingHTTPServer):
    """A probe upstream for nginx's routing rules: answers with a chosen status and counts hits.

    It checks what nginx (real) does with answers the API cannot be made to give on cue;
    every pipeline test runs against the real API.
    """

    daemon_threads = True

    def __init__(self, status: int = 200, ready_status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.status = status
        self.ready_status = ready_status
        self.hits = 0
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _ScriptedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedUpstream

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.hits += 1
        status = self.server.ready_status if self.path == "/ready" else self.server.status
        body = json.dumps({"error": {"code": "from_replica", "message": str(status)}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nginx_in_front_of(tmp_path: Path, ports: list[int]) -> Iterator[str]:
    """A real nginx from the rendered config, proxying to ``ports``; yields its base URL."""
    nginx_port = _free_port()
    env = {**ENV, "BATCHGATE_API_PORTS": ",".join(map(str, ports)), "BATCHGATE_NGINX_PORT": str(nginx_port)}
    cluster = Cluster(Settings.from_env(env), tmp_path / "run", env)
    cluster.render(start_redis=False)
    log = (tmp_path / "nginx.log").open("wb")
    proc = subprocess.Popen(
        [NGINX, "-c", str(cluster.run_dir / "nginx.conf"), "-p", f"{cluster.run_dir}/", "-e", "stderr"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", nginx_port), 0.2):
                break
            assert proc.poll() is None, (tmp_path / "nginx.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{nginx_port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@contextlib.contextmanager
def replicas(*servers: ScriptedUpstream) -> Iterator[None]:
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_nginx_own_errors_are_json(tmp_path: Path) -> None:
    with nginx_in_front_of(tmp_path, [_free_port(), _free_port()]) as url:
        status, headers, body = request("GET", f"{url}/api/v1/tasks/abc.html")
        assert status == 502
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "bad_gateway"
        assert headers["Retry-After"] == "1" and len(headers["X-Request-ID"]) == 32

        headers = {"Content-Type": "application/json", "X-Request-ID": "r-1"}
        status, headers, body = request("POST", f"{url}/api/v1/tasks", b"x" * 4096, headers)
        assert status == 413
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["error"] == {
            "code": "body_too_large",
            "message": "request body exceeds 2048 bytes",
        }
        assert headers["X-Request-ID"] == "r-1"


def test_post_is_retried_on_connect_errors(tmp_path: Path) -> None:
    first, second = ScriptedUpstream(), ScriptedUpstream()
    with replicas(first, second), nginx_in_front_of(tmp_path, [_free_port(), first.port, second.port]) as url:
        for _ in range(6):
            assert request("POST", f"{url}/api/v1/tasks", b"{}")[0] == 200
        assert first.hits + second.hits == 6


def test_post_that_reached_a_replica_is_never_resent(tmp_path: Path) -> None:
    first, second = ScriptedUpstream(status=503), ScriptedUpstream(status=503)
    with replicas(first, second), nginx_in_front_of(tmp_path, [first.port, second.port]) as url:
        status, _, body = request("POST", f"{url}/api/v1/tasks", b"{}")
        assert status == 503 and json.loads(body)["error"]["code"] == "from_replica"
        assert first.hits + second.hits == 1
        # The API's own 503 is true of every replica (Redis down, backpressure): even a GET
        # is not sent again, and the replica's own answer comes back.
        status, _, body = request("GET", f"{url}/api/v1/tasks/abc")
        assert status == 503 and json.loads(body)["error"]["code"] == "from_replica"
        assert first.hits + second.hits == 2


def test_readiness_503_does_not_take_replicas_out(tmp_path: Path) -> None:
    first, second = ScriptedUpstream(ready_status=503), ScriptedUpstream(ready_status=503)
    with replicas(first, second), nginx_in_front_of(tmp_path, [first.port, second.port]) as url:
        for _ in range(10):
            assert request("GET", f"{url}/ready")[0] == 503
        assert first.hits + second.hits == 10  # each probe asked one replica
        assert request("POST", f"{url}/api/v1/tasks", b"{}")[0] == 200


# --- compose and Dockerfile ----------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
    defaults = Settings.from_env({})
    in_container = Settings.from_env({"BATCHGATE_API_HOST": "0.0.0.0"})
    assert services["api"]["command"] == list(api_argv(in_container, COMPOSE_API_PORT))
    assert services["api"]["deploy"]["replicas"] == COMPOSE_API_REPLICAS
    assert services["worker"]["command"] == list(worker_argv(defaults))
    assert services["beat"]["command"] == list(beat_argv("/tmp/celerybeat-schedule"))
    assert services["flower"]["command"] == list(flower_argv("0.0.0.0", 5555))
    assert services["simulator"]["command"] == ["python", "-m", "batching.simulator"]
    for name in ("simulator", "api", "worker", "beat", "flower", "nginx"):
        assert services[name]["environment"]["BATCHGATE_REDIS_URL"] == "redis://redis:6379/0"

    # User preferences: the API reaches PostgreSQL (a named volume) once it is healthy.
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "pgdata" in compose["volumes"]
    assert any(volume.startswith("pgdata:") for volume in postgres["volumes"])
    assert services["api"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert services["api"]["depends_on"]["postgres"] == {"condition": "service_healthy"}

    # The load test: the official image, the repo's locustfile, only on request.
    locust = services["locust"]
    assert locust["image"].startswith("locustio/locust:")
    assert locust["profiles"] == ["loadtest"]
    assert "./loadtest:/mnt/batchgate/loadtest:ro" in locust["volumes"]
    assert locust["command"][:2] == ["-f", "/mnt/batchgate/loadtest/locustfile.py"]

    dockerfile = (REPO / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for name in ("simulator", "api", "worker", "beat", "flower", "nginx"):
        assert services[name]["build"]["target"] in targets
    assert "FROM python:3.11-slim AS app" in dockerfile
    # The dashboard is built in a Node stage and copied in: no Node in the app image.
    assert re.search(r"^FROM node:\S+ AS dashboard$", dockerfile, re.M)
    assert "RUN npm ci --no-audit --no-fund --ignore-scripts && npm run build" in dockerfile
    assert "COPY --from=dashboard /dashboard/dist/ api/dashboard/dist/" in dockerfile
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users[-1] != "root"


def test_makefile_lists_the_project_targets() -> None:
    result = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  (\S+)", result.stdout, re.M))
    assert {"install", "run", "test", "lint", "format", "clean", "loadtest", "bench", "scaletest"} <= listed
