"""Configs of the local stack and of compose, rendered for non-default ports and checked by
the tools that read them: configparser and supervisor's own parser, ``nginx -t`` (and a
real nginx in front of fake replicas, over HTTP and HTTPS), redis-server, the compose-spec
schema and Debian's docker-compose."""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from ruamel.yaml import YAML
from supervisor.options import ServerOptions

from batchgate.cluster import Cluster, ClusterError, free_port, port_in_use
from batchgate.compose_cli import prepare, read_env_file
from batchgate.container import BEAT_SCHEDULE, FLOWER_PORT, NGINX_RUN_DIR, PRINT_VARIABLE, ROLES, role_argv
from batchgate.nginx_config import (
    COMPOSE_API_PORT,
    COMPOSE_API_REPLICAS,
    COMPOSE_CERT_DIR,
    TemplateError,
    compose_layout,
    fill,
    local_layout,
    render_nginx,
)
from batchgate.programs import api_argv, beat_argv, flower_argv, nginx_argv, worker_argv
from batchgate.settings import Settings
from batchgate.supervisor_config import socket_path
from batchgate.tls import ensure_self_signed
from tests import tls_probe

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

    redis_cmd = commands["redis"]
    assert redis_cmd[redis_cmd.index("--port") + 1] == "6411"
    assert redis_cmd[redis_cmd.index("--save") + 1] == ""
    assert redis_cmd[redis_cmd.index("--dir") + 1] == run_dir

    assert commands["simulator"][-2:] == ["-m", "batching.simulator"]
    assert Settings.from_env(cluster.env).model_base_url == "http://127.0.0.1:9390"

    for port in (9301, 9302, 9303):
        api = commands[f"api-{port}"]
        assert Path(api[0]).name == "gunicorn" and api[-1] == "api.wsgi:app"
        assert api[api.index("--worker-class") + 1] == "gevent"
        assert api[api.index("--bind") + 1] == f"127.0.0.1:{port}"
        # No access log: it would hold query strings (the Gemini drop-in's `?key=`).
        assert not [arg for arg in api if arg.startswith(("--access-log", "--log-level"))]

    worker = commands["worker"]
    # Plain `celery -A workers.celery_entry worker`: its shape is the app's configuration.
    assert worker[1:] == ["-A", "workers.celery_entry", "worker", "-n", "batch@%h", "--loglevel", "INFO"]

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


def test_start_refuses_a_tls_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = make_cluster(tmp_path / "run", BATCHGATE_NGINX_TLS_PORT=str(port))
        with pytest.raises(ClusterError, match=f"nginx https 127.0.0.1:{port}"):
            cluster.start()
    assert cluster.poll() is None


def test_the_gemini_key_reaches_only_the_worker(tmp_path: Path) -> None:
    key = "AIzaSy-test_key-0123456789"
    cluster = make_cluster(tmp_path / "run", GEMINI_API_KEY=key)
    cluster.render(start_redis=False)
    assert "GEMINI_API_KEY" not in cluster.env  # what supervisord (and so every program) gets
    parser = configparser.RawConfigParser()
    parser.read(cluster.conf_path)
    for name in cluster.programs:
        environment = parser[f"program:{name}"].get("environment", "")
        assert (key in environment) is (name == "worker"), name
    assert parser["program:worker"]["environment"] == f'GEMINI_API_KEY="{key}"'
    assert key not in " ".join(" ".join(argv) for argv in supervisor_commands(cluster.conf_path).values())
    # supervisor's own parser gives it to the worker, and only to it.
    options = ServerOptions()
    options.realize(args=["-c", str(cluster.conf_path)])
    environments = {
        process.name: process.environment or {}
        for group in options.process_group_configs
        for process in group.process_configs
    }
    assert environments["worker"] == {"GEMINI_API_KEY": key}
    assert all("GEMINI_API_KEY" not in env for name, env in environments.items() if name != "worker")


@pytest.mark.parametrize(
    ("url", "login"),
    [
        ("redis://:pa%40ss%22word@127.0.0.1:{port}/0", ("default", 'pa@ss"word')),
        ("redis://batch:s3cret@127.0.0.1:{port}/0", ("batch", "s3cret")),
    ],
)
def test_local_redis_requires_the_password_of_its_url(
    tmp_path: Path, url: str, login: tuple[str, str]
) -> None:
    port = free_port()
    cluster = make_cluster(tmp_path / "run", BATCHGATE_REDIS_URL=url.format(port=port))
    cluster.render(start_redis=True)
    argv = supervisor_commands(cluster.conf_path)["redis"]
    conf = cluster.run_dir / "redis.conf"
    assert argv[1] == str(conf) and argv[argv.index("--bind") + 1] == "127.0.0.1"
    assert login[1] not in " ".join(argv)  # never on a command line
    assert cluster.urls()["redis"] == url.format(port=port).replace(url.split(":")[2].split("@")[0], "***")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    # The real redis-server, on that command line: a password is required, and it is this one.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        anonymous = redis.Redis(port=port, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                anonymous.ping()
                pytest.fail("Redis answered without a password")
            except redis.AuthenticationError:
                break
            except redis.ResponseError as exc:  # NOAUTH
                assert "NOAUTH" in str(exc) or "auth" in str(exc).lower()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        user, password = login
        assert redis.Redis(port=port, username=user, password=password).ping()
        assert redis.Redis.from_url(cluster.settings.redis_url).ping()
    finally:
        proc.terminate()
        proc.wait(10)


# --- nginx -------------------------------------------------------------------------------------


#: A TLS directive or a TLS listen in a rendered config.
TLS_DIRECTIVE = re.compile(r"^\s*(ssl_\w+|listen .* ssl\b)", re.M)


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

    # HTTPS beside HTTP, with the certificate made in the run folder.
    tls = cluster.run_dir / "tls"
    assert "listen 127.0.0.1:9343 ssl http2 backlog=4096;" in directives
    assert f'ssl_certificate "{tls}/fullchain.pem";' in directives
    assert f'ssl_certificate_key "{tls}/privkey.pem";' in directives
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in directives
    assert stat.S_IMODE((tls / "privkey.pem").stat().st_mode) == 0o600
    assert "return 301 https://$host$request_uri;" not in directives  # local HTTP serves the API
    # Edge policy: per-address shield, short client timeouts, a quick /health.
    assert "limit_req_zone $binary_remote_addr zone=batchgate_per_ip:10m rate=5000r/s;" in directives
    assert "limit_req zone=batchgate_per_ip burst=5000 nodelay;" in directives
    assert "limit_req_status 429;" in directives
    for directive in ("client_header_timeout 10s;", "client_body_timeout 10s;", "send_timeout 30s;"):
        assert directive in directives
    health = re.search(r"location = /health \{(.*?)\}", text, re.S)
    assert health is not None and "proxy_read_timeout 5s;" in health.group(1)
    assert "server_tokens off;" in directives
    # No query string in the access log: the Gemini drop-in's `?key=` would be logged.
    log_format = re.search(r"log_format batchgate (.*?);", text, re.S)
    assert log_format is not None
    assert "$uri" in log_format.group(1) and "$batchgate_request_id" in log_format.group(1)
    assert not re.search(r"\$request\b|\$request_uri|\$args|\$query_string", log_format.group(1))


def test_local_nginx_conf_without_https_passes_nginx_t(tmp_path: Path) -> None:
    cluster = make_cluster(tmp_path / "run", BATCHGATE_NGINX_TLS_PORT="0", BATCHGATE_NGINX_RATE_PER_S="0")
    cluster.render(start_redis=False)
    nginx_test(cluster.run_dir / "nginx.conf", cluster.run_dir)
    text = (cluster.run_dir / "nginx.conf").read_text()
    assert not TLS_DIRECTIVE.search(text)
    assert "listen 127.0.0.1:9380 backlog=4096;" in text and "limit_req" not in text
    assert not (cluster.run_dir / "tls").exists()


def test_compose_nginx_conf_passes_nginx_t(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    certs = tmp_path / "certs"
    ensure_self_signed(certs)
    # nginx -t resolves upstream names and reads the certificate: test the compose layout
    # against a resolvable host and a throwaway certificate.
    layout = compose_layout(settings, tmp_path, api_host="127.0.0.1", cert_dir=str(certs))
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(settings, layout))
    nginx_test(conf, tmp_path)
    text = render_nginx(settings, compose_layout(settings, tmp_path))
    assert f"server api:{COMPOSE_API_PORT} " in text
    assert f"proxy_next_upstream_tries {COMPOSE_API_REPLICAS};" in text
    assert f'ssl_certificate "{COMPOSE_CERT_DIR}/fullchain.pem";' in text
    # HTTPS serves the API; plain HTTP only redirects (and answers /health).
    servers = re.split(r"\n    server \{", text)[1:]
    assert len(servers) == 2
    redirect, api = servers
    assert (
        "listen 0.0.0.0:8080 backlog=4096;" in redirect
        and "return 301 https://$host$request_uri;" in redirect
    )
    assert "location = /health" in redirect and not TLS_DIRECTIVE.search(redirect)
    assert "listen 0.0.0.0:8443 ssl http2 backlog=4096;" in api and "listen 0.0.0.0:8080" not in api
    # Behind a balancer that terminates TLS: plain HTTP serving the API.
    plain = render_nginx(
        settings, compose_layout(Settings.from_env({"BATCHGATE_NGINX_TLS_PORT": "0"}), tmp_path)
    )
    assert not TLS_DIRECTIVE.search(plain) and "return 301" not in plain


def test_template_and_values_must_match() -> None:
    assert fill("a {{ x }} b {{y}}", {"x": "1", "y": "2"}) == "a 1 b 2"
    assert fill('path "{{ x }}";', {"x": "<&>"}) == 'path "<&>";'  # nginx syntax: nothing escaped
    with pytest.raises(TemplateError, match="no value"):
        fill("{{ x }}", {})
    with pytest.raises(TemplateError, match="lacks"):
        fill("nothing", {"x": "1"})
    with pytest.raises(TemplateError, match="cannot be given"):
        render_nginx(Settings.from_env({}), local_layout(Settings.from_env({}), Path("/tmp/$x")))


def test_template_sections_are_kept_or_dropped() -> None:
    template = "a\n  {% if on %}\nb {{ x }}\n{% endif %}\n{% if off %}\nc {{ y }}\n  {% endif %}\nd\n"
    assert fill(template, {"x": "1", "y": "2"}, {"on": True, "off": False}) == "a\nb 1\nd\n"
    # A value used only in a dropped section is still named by the template.
    assert fill(template, {"x": "1", "y": ""}, {"on": True, "off": False}) == "a\nb 1\nd\n"
    with pytest.raises(TemplateError, match="no value"):
        fill(template, {"x": "1", "y": "2"}, {"on": True})
    with pytest.raises(TemplateError, match="lacks"):
        fill(template, {"x": "1", "y": "2"}, {"on": True, "off": True, "other": True})
    with pytest.raises(TemplateError, match="endif"):
        fill("x\n{% if a %}\ny\n", {}, {"a": True})  # never ended


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
        #: The headers and path of the last request nginx passed on.
        self.last_headers: dict[str, str] = {}
        self.last_path = ""
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
            self.server.last_headers = dict(self.headers)
            self.server.last_path = self.path
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


@dataclass(frozen=True)
class Edge:
    """A running nginx: where it answers and what it wrote."""

    url: str
    https_port: int
    #: nginx's stderr (its error log).
    log: Path
    access_log: Path

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def logs(self) -> str:
        """Everything nginx logged (error log and, once flushed, access log)."""
        return self.log.read_text(errors="replace") + (
            self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
        )


@contextlib.contextmanager
def nginx_in_front_of(
    tmp_path: Path, ports: list[int], compose: bool = False, **overrides: str
) -> Iterator[Edge]:
    """A real nginx from the rendered config (local form, or compose form with a throwaway
    certificate), proxying to ``ports`` (compose: to COMPOSE_API_PORT); HTTP and HTTPS on free
    ports."""
    nginx_port, tls_port = free_port(), free_port()
    env = {
        **ENV,
        "BATCHGATE_API_PORTS": ",".join(map(str, ports)),
        "BATCHGATE_NGINX_PORT": str(nginx_port),
        "BATCHGATE_NGINX_TLS_PORT": str(tls_port),
        **overrides,
    }
    cluster = Cluster(Settings.from_env(env), tmp_path / "run", env)
    cluster.render(start_redis=False)
    conf = cluster.run_dir / "nginx.conf"
    access_log = cluster.logs_dir / "nginx-access.log"
    if compose:
        settings = cluster.settings
        pair, _ = ensure_self_signed(tmp_path / "certs")
        layout = compose_layout(settings, cluster.run_dir, cert_dir=str(pair.certificate.parent))
        assert layout.tls is not None
        # The compose form on loopback, in front of the given replicas, logging to a file.
        layout = dataclasses.replace(
            layout,
            listen=f"127.0.0.1:{nginx_port}",
            tls=dataclasses.replace(layout.tls, listen=f"127.0.0.1:{tls_port}"),
            upstreams=tuple(f"127.0.0.1:{port}" for port in ports),
            access_log=str(access_log),
        )
        conf.write_text(render_nginx(settings, layout))
    log_path = tmp_path / "nginx.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", f"{cluster.run_dir}/", "-e", "stderr"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", nginx_port), 0.2):
                break
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.02)
        yield Edge(f"http://127.0.0.1:{nginx_port}", tls_port, log_path, access_log)
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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect comes back as it is


#: HTTPS to nginx's self-signed certificate.
_UNVERIFIED = ssl._create_unverified_context()


def request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_UNVERIFIED), _NoRedirects()
    )
    try:
        with opener.open(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_nginx_own_errors_are_json(tmp_path: Path) -> None:
    with nginx_in_front_of(tmp_path, [free_port(), free_port()]) as edge:
        url = edge.url
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
    with (
        replicas(first, second),
        nginx_in_front_of(tmp_path, [free_port(), first.port, second.port]) as edge,
    ):
        url = edge.url
        for _ in range(6):
            assert request("POST", f"{url}/api/v1/tasks", b"{}")[0] == 200
        assert first.hits + second.hits == 6


def test_post_that_reached_a_replica_is_never_resent(tmp_path: Path) -> None:
    first, second = ScriptedUpstream(status=503), ScriptedUpstream(status=503)
    with replicas(first, second), nginx_in_front_of(tmp_path, [first.port, second.port]) as edge:
        url = edge.url
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
    with replicas(first, second), nginx_in_front_of(tmp_path, [first.port, second.port]) as edge:
        url = edge.url
        for _ in range(10):
            assert request("GET", f"{url}/ready")[0] == 503
        assert first.hits + second.hits == 10  # each probe asked one replica
        assert request("POST", f"{url}/api/v1/tasks", b"{}")[0] == 200


def test_https_offers_only_tls_1_2_and_1_3_and_negotiates_http2(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with replicas(upstream), nginx_in_front_of(tmp_path, [upstream.port]) as edge:
        assert tls_probe.handshake(edge.https_port, ssl.TLSVersion.TLSv1_3) == ("TLSv1.3", "h2")
        assert tls_probe.handshake(edge.https_port, ssl.TLSVersion.TLSv1_2) == ("TLSv1.2", "h2")
        for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            with pytest.raises(ssl.SSLError):
                tls_probe.handshake(edge.https_port, old)
        status, headers, _ = request(
            "GET", f"{edge.https_url}/api/v1/tasks/abc", headers={"X-Request-ID": "t-1"}
        )
        assert status == 200 and headers["X-Request-ID"] == "t-1"
        assert headers["Server"] == "nginx"  # server_tokens off: no version
        assert upstream.last_headers["X-Forwarded-Proto"] == "https"
        assert upstream.last_headers["X-Request-ID"] == "t-1"
        # HTTP on its own port keeps serving the API in the local form (tests and load tests use it).
        assert request("GET", f"{edge.url}/api/v1/tasks/abc")[0] == 200
        assert upstream.last_headers["X-Forwarded-Proto"] == "http"


@pytest.mark.skipif(not tls_probe.curl_available(), reason="curl is not installed (make test installs it)")
def test_a_request_over_http2_reaches_a_replica(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with replicas(upstream), nginx_in_front_of(tmp_path, [upstream.port]) as edge:
        version, status, headers, body = tls_probe.curl_http2(
            "POST", f"{edge.https_url}/api/v1/tasks", {"a": 1}
        )
        assert (version, status) == ("HTTP/2", 200) and body == {
            "error": {"code": "from_replica", "message": "200"}
        }
        assert len(headers["x-request-id"]) == 32
        assert upstream.last_headers["Host"] == f"127.0.0.1:{edge.https_port}"
    assert "HTTP/2.0" in edge.access_log.read_text()


def test_request_ids_are_kept_when_sane_and_made_otherwise(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with replicas(upstream), nginx_in_front_of(tmp_path, [upstream.port]) as edge:
        given = "client-42.A_b"
        assert (
            request("GET", f"{edge.url}/api/v1/tasks/a", headers={"X-Request-ID": given})[1]["X-Request-ID"]
            == given
        )
        assert upstream.last_headers["X-Request-ID"] == given
        for bad in ("has space", "x" * 129, 'quote"d'):
            _, headers, _ = request("GET", f"{edge.url}/api/v1/tasks/b", headers={"X-Request-ID": bad})
            assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"]), bad
            assert upstream.last_headers["X-Request-ID"] == headers["X-Request-ID"]
        _, headers, _ = request("GET", f"{edge.url}/api/v1/tasks/c")
        generated = headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        wait_for_log(edge, f"id={generated}")
        assert f"id={given}" in edge.access_log.read_text()


def test_the_per_address_shield_answers_429_in_the_error_shape(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with (
        replicas(upstream),
        nginx_in_front_of(tmp_path, [upstream.port], BATCHGATE_NGINX_RATE_PER_S="2") as edge,
    ):
        answers = [request("GET", f"{edge.url}/api/v1/tasks/x") for _ in range(12)]
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert 2 <= 12 - len(refused) <= 5 and upstream.hits == 12 - len(refused)  # burst 2 (+ refill)
    for headers, body in refused:
        assert headers["Content-Type"] == "application/json" and headers["Retry-After"] == "1"
        assert json.loads(body)["error"]["code"] == "rate_limited"
        assert len(headers["X-Request-ID"]) == 32


def test_query_strings_and_keys_never_reach_nginx_logs(tmp_path: Path) -> None:
    secret = "AIzaSECRET0123456789abcdef"
    with nginx_in_front_of(tmp_path, [free_port()]) as edge:
        # A key in the query is refused by nginx itself, before anything could log it...
        for path in ("/v1beta/models/gemini-2.5-flash:generateContent", "/v1/models/m:streamGenerateContent"):
            status, _, body = request("POST", f"{edge.url}{path}?key={secret}&alt=sse", b'{"contents": []}')
            assert status == 400 and json.loads(body)["error"]["code"] == "key_in_query"
        # ...except by the event streams; no replica answers them: nginx has a failure to log,
        # the worst case for what it might quote.
        for path in ("/api/v1/metrics/stream", "/api/v1/tasks/t1/events"):
            assert request("GET", f"{edge.url}{path}?key={secret}")[0] == 502
        wait_for_log(edge, "GET /api/v1/tasks/t1/events HTTP/1.1")
        assert "POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1" in edge.access_log.read_text()
    assert secret not in edge.logs() and "key=" not in edge.logs()


def test_compose_form_refuses_a_key_in_the_query_instead_of_redirecting(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with replicas(upstream), nginx_in_front_of(tmp_path, [upstream.port], compose=True) as edge:
        status, headers, body = request("GET", f"{edge.url}/api/v1/tasks/abc?key=SECRETKEY123")
        assert status == 400 and "Location" not in headers
        assert json.loads(body)["error"]["code"] == "key_in_query"
        assert upstream.hits == 0
    assert "SECRETKEY123" not in edge.logs()


def test_compose_form_redirects_http_to_https(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with replicas(upstream), nginx_in_front_of(tmp_path, [upstream.port], compose=True) as edge:
        status, headers, _ = request("GET", f"{edge.url}/api/v1/tasks/abc?wait=5")
        assert status == 301 and headers["Location"] == "https://127.0.0.1/api/v1/tasks/abc?wait=5"
        status, headers, _ = request("POST", f"{edge.url}/api/v1/tasks", b"{}")
        assert status == 308 and headers["Location"] == "https://127.0.0.1/api/v1/tasks"
        assert upstream.hits == 0
        # Probes still reach a replica over plain HTTP.
        assert request("GET", f"{edge.url}/health")[0] == 200 and upstream.last_path == "/health"
        status, headers, _ = request("POST", f"{edge.https_url}/api/v1/tasks", b"{}")
        assert status == 200 and upstream.last_path == "/api/v1/tasks"
        assert tls_probe.handshake(edge.https_port, ssl.TLSVersion.TLSv1_3) == ("TLSv1.3", "h2")


def wait_for_log(edge: Edge, text: str) -> None:
    """The access log is flushed every second."""
    deadline = time.monotonic() + 5
    while text not in edge.logs():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{edge.logs()}"
        time.sleep(0.05)


# --- compose and Dockerfile ----------------------------------------------------------------------


#: What docker-compose.yml requires from the environment (`make up` writes them to .env).
COMPOSE_ENV = {"REDIS_PASSWORD": "test-password", "BATCHGATE_FLOWER_AUTH": "ops:test"}


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
    anchors and checks every service. It predates the top-level `name:` of the compose spec:
    it is given a copy without it (the schema test above checks the original)."""
    compose = YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    assert compose.pop("name") == "batchgate"
    copy = tmp_path / "docker-compose.yml"
    YAML(typ="safe").dump(compose, copy)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **COMPOSE_ENV}
    run = [DOCKER_COMPOSE, "--project-directory", str(REPO), "-f", str(copy)]
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
    assert f"127.0.0.1:{FLOWER_PORT}:{FLOWER_PORT}" in services["flower"]["ports"]
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
    assert set(nginx["ports"]) == {"80:8080", "443:8443"}
    assert nginx["environment"]["BATCHGATE_NGINX_PORT"] == "8080"
    assert nginx["environment"]["BATCHGATE_NGINX_TLS_PORT"] == "8443"
    assert "healthcheck" in nginx and "healthcheck" in services["api"]

    # User preferences: the API reaches PostgreSQL (a named volume) once it is healthy.
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "pgdata" in compose["volumes"]
    assert any(volume.startswith("pgdata:") for volume in postgres["volumes"])
    assert services["api"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert services["api"]["depends_on"]["postgres"] == {"condition": "service_healthy"}

    # The load test: the official image, the repo's locustfile, only on request, over HTTPS.
    locust = services["locust"]
    assert locust["image"].startswith("locustio/locust:")
    assert locust["profiles"] == ["loadtest"]
    assert "./loadtest:/mnt/batchgate/loadtest:ro" in locust["volumes"]
    assert locust["command"][:2] == ["-f", "/mnt/batchgate/loadtest/locustfile.py"]
    assert locust["command"][locust["command"].index("-H") + 1] == "https://nginx:8443"

    dockerfile = (REPO / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    for name in ("simulator", "api", "worker", "beat", "flower", "nginx"):
        assert services[name]["build"]["target"] in targets
    assert "FROM python:3.11-slim AS app" in dockerfile
    assert (
        'ENTRYPOINT ["/app/entrypoint.sh"]' in dockerfile
        and "COPY --chmod=755 entrypoint.sh ./" in dockerfile
    )
    # The dashboard is built in a Node stage and copied in: no Node in the app image.
    assert re.search(r"^FROM node:\S+ AS dashboard$", dockerfile, re.M)
    assert "RUN npm ci --no-audit --no-fund --ignore-scripts && npm run build" in dockerfile
    assert "COPY --from=dashboard /dashboard/dist/ api/dashboard/dist/" in dockerfile
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
        result = entrypoint(role, "--extra")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [*role_argv(role, settings), "--extra"]
    # Anything else runs as given; nothing at all is a usage error.
    assert entrypoint("echo", "as", "given").stdout == "as given\n"
    assert entrypoint().returncode == 2
    assert os.access(REPO / "entrypoint.sh", os.X_OK)


def test_compose_prepare_makes_certificates_and_secrets_only_when_missing(tmp_path: Path) -> None:
    made = prepare(tmp_path, {})
    assert len(made) == 2
    env = read_env_file(tmp_path / ".env")
    assert set(env) == {"REDIS_PASSWORD", "BATCHGATE_FLOWER_AUTH"} and env[
        "BATCHGATE_FLOWER_AUTH"
    ].startswith("admin:")
    assert re.fullmatch(r"[A-Za-z0-9_-]{24,}", env["REDIS_PASSWORD"])  # URL-safe: it goes into a URL
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
    assert set(read_env_file(other / ".env")) == {"BATCHGATE_FLOWER_AUTH"}


def test_makefile_lists_the_project_targets() -> None:
    result = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  (\S+)", result.stdout, re.M))
    assert {"install", "run", "test", "lint", "format", "clean", "loadtest", "bench", "scaletest"} <= listed
