"""The live dashboard: its blueprint, then the page in headless Chromium on a real stack
(the page asks for an API key, and copes with a refused key and with too many streams).

Chromium (Debian's ``chromium``) is driven over its DevTools protocol on a pipe
(``--remote-debugging-pipe``): no driver, no port, no extra Python package.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from api import dashboard_view
from api.errors import register_error_handlers
from batchgate.settings import Settings
from tests.api.test_metrics_stream import Stream
from tests.clients import submit_and_collect
from tests.conftest import Stack, create_key
from tests.harness import BIN, REPO, Process, free_port, http_json, start_beat, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1400,1250",
]
ARTIFACTS = REPO / "test-artifacts"
#: Where the page keeps the key it was given (this tab only).
KEY_STORAGE = "batchgate.apiKey"


# -- the blueprint, without a browser ---------------------------------------------------------


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty build folder the blueprint serves from."""
    folder = tmp_path / "dist"
    folder.mkdir()
    monkeypatch.setattr(dashboard_view, "DIST_DIR", folder)
    return folder


@pytest.fixture
def client(dist: Path) -> Any:
    app = Flask(__name__)
    register_error_handlers(app)
    app.register_blueprint(dashboard_view.bp)
    return app.test_client()


def test_not_built_is_503_json(client: Any) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 503
    assert response.json == {"error": {"code": "dashboard_not_built", "message": "run make dashboard"}}


def test_serves_the_built_page_and_assets(client: Any, dist: Path) -> None:
    (dist / "assets").mkdir()
    (dist / "index.html").write_text("<!doctype html><title>t</title>")
    (dist / "assets" / "app.js").write_text("console.log(1)")

    for path in ("/dashboard", "/dashboard/"):
        with client.get(path) as page:
            assert page.status_code == 200
            assert page.mimetype == "text/html"
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    with client.get("/dashboard/assets/app.js") as script:
        assert script.status_code == 200
        assert script.mimetype in ("text/javascript", "application/javascript")
        assert script.get_data() == b"console.log(1)"


def test_missing_or_escaping_asset_is_404_json(client: Any, dist: Path) -> None:
    (dist / "index.html").write_text("secret-ish")
    for path in (
        "/dashboard/assets/nope.js",
        "/dashboard/assets/../index.html",
        "/dashboard/assets/%2e%2e/index.html",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"


# -- the page in Chromium, on a real stack ----------------------------------------------------


class DevTools:
    """One headless Chromium, spoken to over its DevTools pipe: NUL-terminated JSON, fd 3 in, fd 4 out."""

    def __init__(self, profile_dir: Path, log_path: Path) -> None:
        to_browser, from_browser = os.pipe(), os.pipe()
        # Above 4, so that bash's ``3<&r 4>&w`` cannot clobber one with the other.
        child_in = fcntl.fcntl(to_browser[0], fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser[1], fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser[0], from_browser[1]):
            os.close(fd)
        argv = ["/bin/bash", "-c", f'exec "$@" 3<&{child_in} 4>&{child_out}', "bash", str(CHROMIUM)]
        argv += [*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "about:blank"]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            pass_fds=(child_in, child_out),
            start_new_session=True,
        )
        os.close(child_in)
        os.close(child_out)
        self._writer = os.fdopen(to_browser[1], "wb")
        self._reader_fd = from_browser[0]
        self._condition = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._next_id = 0
        self._closed = False
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, name="devtools-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        pending = b""
        while chunk := os.read(self._reader_fd, 1 << 16):
            pending += chunk
            *messages, pending = pending.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._condition:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._condition.notify_all()
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; a protocol error raises."""
        with self._condition:
            self._next_id += 1
            message_id = self._next_id
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self._writer.write(json.dumps(message).encode() + b"\0")
        self._writer.flush()
        with self._condition:
            if not self._condition.wait_for(lambda: message_id in self._replies or self._closed, timeout):
                raise TimeoutError(f"Chromium did not answer {method} within {timeout}s")
            reply = self._replies.pop(message_id, None)
        if reply is None:
            raise RuntimeError(f"Chromium exited during {method} (see {self._log.name})")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})  # type: ignore[no-any-return]

    def open(self, url: str) -> Page:
        """A new tab showing ``url`` (loaded), with its script errors and console recorded."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        wait_until(lambda: page.evaluate("document.readyState") == "complete", 10, f"{url} to load")
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(TimeoutError, RuntimeError, OSError):
                self.call("Browser.close", timeout=5)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # renderer and zygote children of our session
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self._writer.close()
        self._reader.join(5)
        os.close(self._reader_fd)
        self._log.close()


@dataclass
class Page:
    devtools: DevTools
    session: str

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (promises awaited); a script error raises."""
        result = self.devtools.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def connection(self) -> str:
        """What the page says of its metrics stream: key (waiting for one), connecting,
        connected or disconnected."""
        return str(self.evaluate("document.getElementById('connection').dataset.state"))

    def asks_for_key(self) -> bool:
        return not self.evaluate("document.getElementById('key-form').hidden")

    def key_refused(self) -> bool:
        """The form is back, saying that the key it was given is not valid."""
        message = "document.getElementById('key-message').dataset.reason"
        return self.asks_for_key() and self.evaluate(message) == "invalid_key"

    def notice(self) -> str:
        """The reason of the notice shown above the tiles ("" when none is)."""
        notice = "document.getElementById('notice')"
        return str(self.evaluate(f"{notice}.hidden ? '' : {notice}.dataset.reason"))

    def enter_key(self, key: str) -> None:
        """Type ``key`` into the page's key form and press its button, as a person would."""
        self.evaluate("document.getElementById('api-key').focus()")
        self.devtools.call("Input.insertText", {"text": key}, session=self.session)
        self.evaluate("document.querySelector('#key-form button').click()")

    def reload(self) -> None:
        self.evaluate("window.beforeReload = true")
        self.devtools.call("Page.reload", session=self.session)
        wait_until(
            lambda: self.evaluate("!window.beforeReload && document.readyState === 'complete'"),
            10,
            "the page to load again",
        )

    def events_so_far(self) -> int:
        """A mark for ``problems(since=...)``."""
        return len(self.devtools.events)

    def metric(self, name: str) -> float | None:
        """The raw value behind ``[data-metric=name]`` (None until a snapshot set it)."""
        raw = self.evaluate(f"document.querySelector('[data-metric=\"{name}\"]').dataset.value ?? ''")
        return float(raw) if raw else None

    def chart(self, name: str) -> dict[str, int]:
        """What ``[data-chart=name]`` shows: canvas size, painted pixels, x points and non-null values."""
        return self.evaluate(  # type: ignore[no-any-return]
            f"""(() => {{
              const figure = document.querySelector('[data-chart="{name}"]');
              const canvas = figure.querySelector('canvas');
              if (!canvas) return {{width: 0, height: 0, painted: 0, points: 0, values: 0}};
              const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
              let painted = 0;
              for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
              return {{width: canvas.width, height: canvas.height, painted,
                       points: Number(figure.dataset.points || 0), values: Number(figure.dataset.values || 0)}};
            }})()"""
        )

    def screenshot(self, path: Path) -> None:
        data = self.devtools.call("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def problems(self, since: int = 0) -> list[str]:
        """Uncaught exceptions, console errors and browser errors (blocked or failed loads) so far
        (or since the mark ``since``)."""
        found = []
        for event in list(self.devtools.events)[since:]:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(json.dumps(params["args"])[:500])
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")
        return found


@pytest.fixture
def chromium(tmp_path: Path, logs_dir: Path) -> Iterator[DevTools]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    browser = DevTools(tmp_path / "chromium-profile", logs_dir / f"chromium-{free_port()}.log")
    try:
        yield browser
    finally:
        browser.close()


class Site:
    """An API replica that serves the dashboard, on the stack; it can be killed and started again."""

    def __init__(self, stack: Stack, logs_dir: Path) -> None:
        self.stack = stack
        self.logs_dir = logs_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_key = stack.api_key
        self.api: Process | None = None
        self.starts = 0

    def start(self) -> None:
        argv = [str(BIN / "gunicorn"), "--worker-class", "gevent", "--workers", "1"]
        argv += ["--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", "1", "--no-control-socket"]
        argv += ["api.wsgi:app"]
        self.starts += 1
        name = f"api-dashboard-{self.port}-{self.starts}"
        self.api = Process(name, argv, self.stack.env, self.logs_dir)
        wait_until(lambda: http_json("GET", f"{self.base}/health")[0] == 200, 20, "the dashboard's API")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.api is not None:
            self.api.stop(sig)


@pytest.fixture(scope="module")
def site(stack: Stack, logs_dir: Path) -> Iterator[Site]:
    """The stack plus beat (the metrics task) and an API replica that serves the dashboard."""
    if not (dashboard_view.DIST_DIR / "index.html").is_file():
        pytest.fail(f"the dashboard is not built in {dashboard_view.DIST_DIR}: run `make dashboard`")
    beat = start_beat(logs_dir, stack.env)
    site = Site(stack, logs_dir)
    try:
        site.start()
        yield site
    finally:
        site.stop()
        beat.stop()


def test_dashboard_asks_for_a_key_and_shows_live_metrics(site: Site, chromium: DevTools) -> None:
    key = create_key(site.stack.env, "free")
    page = chromium.open(f"{site.base}/dashboard")
    try:
        # No key yet: the page asks for one (and opens no stream).
        assert page.connection() == "key" and page.asks_for_key()
        page.enter_key("bg_not-a-valid-key")
        wait_until(page.key_refused, 15, "the page to say that the key was refused")
        assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None

        # The key already holds every stream it may: the page says so, then connects by itself
        # once a slot is free.
        held = [Stream(site.base, key) for _ in range(Settings().metrics_streams_per_key)]
        try:
            assert all(stream.status == 200 for stream in held), [s.body for s in held]
            page.enter_key(key)
            wait_until(lambda: page.notice() == "too_many_streams", 15, "the page to say: too many streams")
            assert page.connection() != "connected" and not page.asks_for_key()
        finally:
            for stream in held:
                stream.close()
        wait_until(lambda: page.connection() == "connected", 30, "the page to connect once a slot is free")
        assert page.notice() == ""
        assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") == key

        # A reload keeps the key (sessionStorage): no question asked. From here on, no errors.
        mark = page.events_so_far()
        page.reload()
        assert not page.asks_for_key()
        wait_until(lambda: page.connection() == "connected", 15, "the page to connect to the metrics stream")
        wait_until(lambda: page.metric("requests_1m") is not None, 15, "a first snapshot on the page")
        before = page.metric("requests_1m") or 0
        for name in ("latency", "throughput", "queue_depth"):
            shown = page.chart(name)
            assert shown["width"] > 0 and shown["height"] > 0 and shown["painted"] > 0, (name, shown)
            assert shown["points"] > 0, (name, shown)  # the snapshot's series: ~5 minutes of slots

        run = submit_and_collect(
            site.base, [{"prompt": f"dashboard {i}"} for i in range(64)], api_key=site.api_key
        )
        assert all(b is not None and b["status"] == "succeeded" for b in run.bodies), run.failures

        wait_until(
            lambda: (page.metric("requests_1m") or 0) >= before + 64, 15, "the page to count the new load"
        )
        assert (page.metric("throughput_rps_1m") or 0) > 0
        assert (page.metric("p99_ms_1m") or 0) > 0
        assert page.evaluate("document.getElementById('drift').dataset.drift") == "n/a"
        batches = page.chart("batch_sizes")
        assert batches["values"] > 0 and batches["painted"] > 0, batches
        assert page.problems(since=mark) == []

        # The replica dies: the page says so, and reconnects by itself once it is back.
        site.stop(signal.SIGKILL)
        wait_until(lambda: page.connection() == "disconnected", 10, "the page to notice the drop")
        site.start()
        wait_until(lambda: page.connection() == "connected", 15, "the page to reconnect")

        # The series holds completed 10 s slots: the load reaches the line chart within one slot.
        latency = wait_until(
            lambda: (shown := page.chart("latency"))["values"] > 0 and shown,
            15,
            "the load on the latency chart",
        )
        assert latency["painted"] > 0
    except BaseException:
        with contextlib.suppress(Exception):  # what the page showed when it failed, if it still can
            page.screenshot(ARTIFACTS / "dashboard.png")
        raise
    page.screenshot(ARTIFACTS / "dashboard.png")
