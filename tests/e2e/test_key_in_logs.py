"""An API key sent as ``?key=`` never reaches a log file.

A real local cluster (supervisor, nginx, one API replica, worker, beat, Flower, simulator)
with a small body limit and a low per-address shield, so that nginx's error lines (body too
large, rate shield, replica down), which quote the whole request line, are cheap to provoke.
Each test then searches every file in the cluster's log folder for the keys it sent.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from batchgate.apikeys import ApiKeyStore
from tests.clients import read_events
from tests.conftest import RunningCluster, running_cluster, stack_env
from tests.harness import BIN, free_port, http_json, wait_until

#: What nginx answers to ``?key=`` outside the event streams: the API's own answer, word for word.
KEY_IN_QUERY = {
    "error": {
        "code": "key_in_query",
        "message": "send the API key in a header (X-API-Key, x-goog-api-key or Authorization: Bearer); "
        "?key= is accepted only by the event streams",
    }
}
MAX_BODY_BYTES = 4096
#: Low enough to exhaust in a fraction of a second, high enough for the other tests' requests.
RATE_PER_S = 40


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    run_dir = tmp_path_factory.mktemp("key-cluster")
    env = stack_env(
        redis_url,
        # One replica: once it is stopped, every request nginx passes on fails at once.
        BATCHGATE_API_PORTS=str(free_port()),
        BATCHGATE_NGINX_PORT=str(free_port()),
        BATCHGATE_NGINX_TLS_PORT="0",
        BATCHGATE_FLOWER_PORT=str(free_port()),
        BATCHGATE_SIM_PORT=str(free_port()),
        BATCHGATE_RUN_DIR=str(run_dir),
        BATCHGATE_FLOWER_AUTH="ops:test-password",
        BATCHGATE_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        BATCHGATE_NGINX_RATE_PER_S=str(RATE_PER_S),
    )
    with running_cluster(env, run_dir) as running:
        yield running


@pytest.fixture(scope="module")
def key(cluster: RunningCluster) -> str:
    """A distinctive, valid (premium) key of this module's own."""
    settings = cluster.settings
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    try:
        return ApiKeyStore(client, settings.broker.key_prefix).create("premium", "key in the query")
    finally:
        client.close()


class Sender:
    """Requests through nginx, each with an X-Request-ID of its own, so that a test can wait
    until the access log (each nginx worker flushes its buffer every second) has them all."""

    def __init__(self, cluster: RunningCluster) -> None:
        self.cluster = cluster
        self.ids: list[str] = []

    def new_id(self) -> str:
        self.ids.append(f"keys-{secrets.token_hex(8)}")
        return self.ids[-1]

    def __call__(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], Any]:
        tagged = {**(headers or {}), "X-Request-ID": self.new_id()}
        return http_json(method, f"{self.cluster.url}{path}", body, headers=tagged)

    def access_lines(self) -> dict[str, str]:
        """The access log's line for each request sent, once all of them are there."""

        def lines() -> dict[str, str] | None:
            text = self.cluster.cluster.logs("nginx-access")
            found = {line.rsplit(" id=", 1)[-1]: line for line in text.splitlines()}
            return found if set(self.ids) <= set(found) else None

        return wait_until(lines, 10, f"{len(self.ids)} requests in the access log")


def assert_never_logged(cluster: RunningCluster, sent: Sender, *keys: str) -> None:
    """Once everything ``sent`` is in the access log, no file under the log folder (nginx's
    access log, its error log in nginx.log, every other program's log) holds any of ``keys``."""
    sent.access_lines()
    logs = sorted(path for path in cluster.cluster.logs_dir.rglob("*") if path.is_file())
    assert {"nginx-access.log", "nginx.log", "worker.log", "supervisord.log"} <= {path.name for path in logs}
    leaks = [
        f"{path.name}: {redact(line, keys)}"
        for path in logs
        for line in path.read_text(errors="replace").splitlines()
        if any(key in line for key in keys)
    ]
    if leaks:  # reported without the keys themselves
        pytest.fail(f"{len(leaks)} lines hold a key sent in a URL:\n" + "\n".join(leaks[:20]), pytrace=False)


def redact(text: str, keys: tuple[str, ...]) -> str:
    for key in keys:
        text = text.replace(key, "<key>")
    return text


def error_line(cluster: RunningCluster, what: str, request_line: str) -> str:
    """nginx's error line saying ``what`` about ``request_line``, once it is written."""

    def find() -> str | None:
        for line in cluster.cluster.logs("nginx").splitlines():
            if what in line and f'request: "{request_line}"' in line:
                return line
        return None

    return wait_until(find, 10, f"nginx to log {what!r} for {request_line!r}")


def stop_now(cluster: RunningCluster, name: str) -> None:
    """Stop program ``name`` (supervisor does not restart it) without its graceful timeout:
    nginx's idle keep-alive connections would hold a replica's worker for all of it."""
    pid = cluster.cluster.pid(name)
    command = [str(BIN / "supervisorctl"), "-c", str(cluster.cluster.conf_path), "stop", name]
    stopping = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: cluster.cluster.state(name) != "RUNNING", 10, f"{name} stopping")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    output, _ = stopping.communicate(timeout=30)
    assert stopping.returncode == 0 and cluster.cluster.state(name) == "STOPPED", output


def test_nginx_refuses_a_key_in_the_query_outside_the_event_streams(
    cluster: RunningCluster, key: str
) -> None:
    send = Sender(cluster)
    (port,) = cluster.settings.api.api_ports
    replica = f"http://127.0.0.1:{port}"
    gemini = {"contents": [{"role": "user", "parts": [{"text": "never passed on"}]}]}
    refused = [
        ("POST", "/api/v1/tasks", {"prompt": "never enqueued"}),
        ("GET", "/api/v1/tasks/x", None),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", gemini),
        ("GET", "/health", None),
    ]
    for method, path, body in refused:
        status, headers, answer = send(method, f"{path}?key={key}", body)
        assert (status, answer) == (400, KEY_IN_QUERY), (method, path)
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Request-ID"] == send.ids[-1]
        # The replica, asked directly, says the same (the Gemini drop-in in Google's shape).
        status, _, answer = http_json(method, f"{replica}{path}?key={key}", body)
        assert (status, answer["error"]["message"]) == (400, KEY_IN_QUERY["error"]["message"])

    # nginx answered them itself: no upstream in the access log.
    lines = send.access_lines()
    for (method, path, _), request_id in zip(refused, send.ids, strict=True):
        line = lines[request_id]
        assert f'"{method} {path} HTTP/1.1" 400 ' in line and line.endswith(f" up=- id={request_id}"), line
    assert_never_logged(cluster, send, key)


def test_the_event_streams_take_the_key_in_the_query(cluster: RunningCluster, key: str) -> None:
    send = Sender(cluster)
    status, _, task = send("POST", "/api/v1/tasks", {"prompt": "followed with ?key="}, {"X-API-Key": key})
    assert status == 202, task
    events_url = f"{cluster.url}/api/v1/tasks/{task['id']}/events"
    events = read_events(f"{events_url}?key={key}", {"X-Request-ID": send.new_id()})
    assert [name for _, name, _ in events] == ["queued", "running", "succeeded"]
    # The key in the query is what authenticates: without it, or with a wrong one, refused.
    wrong = f"bg_wrong{secrets.token_hex(12)}"
    status, _, answer = send("GET", f"/api/v1/tasks/{task['id']}/events")
    assert (status, answer["error"]["code"]) == (401, "missing_api_key")
    status, _, answer = send("GET", f"/api/v1/tasks/{task['id']}/events?key={wrong}")
    assert (status, answer["error"]["code"]) == (401, "invalid_api_key")

    def metrics_event() -> bool:
        request = urllib.request.Request(
            f"{cluster.url}/api/v1/metrics/stream?key={key}", headers={"X-Request-ID": send.new_id()}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return response.readline() == b"event: metrics\n" and response.readline().startswith(b"data: {")

    wait_until(metrics_event, 30, "a metrics event with ?key=")
    assert_never_logged(cluster, send, key, wrong)


def test_nginx_error_lines_never_quote_a_key(cluster: RunningCluster, key: str) -> None:
    """A key on an event stream meets nginx's errors (no line at all there); elsewhere it is
    refused before any of them. Requests without a key show the same errors are logged."""
    send = Sender(cluster)
    tag = secrets.token_hex(6)
    events = f"/api/v1/tasks/{tag}/events"  # no such task: the API answers 404
    streams = [events, "/api/v1/metrics/stream"]  # sent with ?key= (failures name the path only)
    too_big = "x" * (2 * MAX_BODY_BYTES)

    # A body over the limit: refused when nginx has chosen the location.
    for path in streams:
        status, _, answer = send("GET", f"{path}?key={key}", too_big)
        assert (status, answer["error"]["code"]) == (413, "body_too_large"), path
    status, _, answer = send("POST", f"/api/v1/tasks?key={key}", {"prompt": too_big})
    assert (status, answer) == (400, KEY_IN_QUERY)  # elsewhere refused before the body is looked at
    assert send("POST", f"/api/v1/{tag}/too-large", {"prompt": too_big})[0] == 413
    error_line(cluster, "client intended to send too large body", f"POST /api/v1/{tag}/too-large HTTP/1.1")

    # The only replica down: nginx cannot connect.
    name = f"api-{cluster.settings.api.api_ports[0]}"
    stop_now(cluster, name)
    try:
        for path in streams:
            status, _, answer = send("GET", f"{path}?key={key}")
            assert (status, answer["error"]["code"]) == (502, "bad_gateway"), path
        status, _, answer = send("POST", f"/api/v1/tasks?key={key}", {"prompt": "refused, replica or not"})
        assert (status, answer) == (400, KEY_IN_QUERY)
        assert send("GET", f"/api/v1/{tag}/down")[0] == 502
        error_line(cluster, "while connecting to upstream", f"GET /api/v1/{tag}/down HTTP/1.1")
    finally:
        cluster.cluster.restart(name)
        wait_until(lambda: send("GET", "/ready")[0] == 200, 30, f"{name} back behind nginx")

    # The per-address shield: send as fast as we can until it has refused both kinds.
    control = f"/api/v1/{tag}/shield"
    limited = {f"{events}?key={key}": 0, control: 0}
    for _ in range(20 * RATE_PER_S):
        for path in limited:
            limited[path] += send("GET", path)[0] == 429
        if min(limited.values()) > 0:
            break
    assert min(limited.values()) > 0, list(limited.values())
    error_line(cluster, "limiting requests", f"GET {control} HTTP/1.1")
    wait_until(lambda: send("GET", "/health")[0] == 200, 10, "the shield to let requests through again")

    # Not a line about the event stream, and the key nowhere.
    about_events = [line for line in cluster.cluster.logs("nginx").splitlines() if events in line]
    if about_events:
        pytest.fail(
            "nginx logged the event stream:\n" + redact("\n".join(about_events), (key,)), pytrace=False
        )
    assert_never_logged(cluster, send, key)
