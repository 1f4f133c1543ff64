"""A real nginx in front of fake replicas, over HTTP and HTTPS: its own errors in the API's
shape, retries only where safe, TLS and HTTP/2, request ids, the per-address shield, and
logs that never hold a query string or a key."""

import contextlib
import dataclasses
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchgate.settings import Settings
from stack.cluster import Cluster
from stack.nginx_config import (
    compose_layout,
    render_nginx,
)
from stack.ports import free_port
from stack.tls import ensure_self_signed
from tests import tls_probe
from tests.stack.stack_configs import ENV, NGINX

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
