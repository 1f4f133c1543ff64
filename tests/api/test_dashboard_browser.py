"""The live dashboard in headless Chromium, on a real stack: the page asks for an API key, copes
with a refused key and with too many streams, shows live metrics and reconnects by itself.

Playwright drives Debian's Chromium (``/usr/bin/chromium``, from ``make test-deps``) through
``executable_path``: no browser of Playwright's own is downloaded.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, sync_playwright
from playwright.sync_api import Error as PageError

from api import dashboard_view
from tests.api.test_metrics_stream import CAP as STREAMS_PER_KEY
from tests.api.test_metrics_stream import Stream
from tests.clients import submit_and_collect
from tests.conftest import Stack, create_key
from tests.harness import BIN, REPO, Process, free_port, http_json, start_beat, wait_until

CHROMIUM = Path("/usr/bin/chromium")
#: On top of Playwright's own: no sandbox (the tests run as root), no GPU, QUIC or /dev/shm.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage"]
VIEWPORT: ViewportSize = {"width": 1400, "height": 1250}
#: Playwright's wait for one action (a load, a click); the test's own waits are wait_until's.
ACTION_TIMEOUT_MS = 15_000
ARTIFACTS = REPO / "test-artifacts"
#: Where the page keeps the key it was given (this tab only).
KEY_STORAGE = "batchgate.apiKey"


class Dashboard:
    """The dashboard in one tab: what it shows, read from its DOM, and the errors it logged."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self._problems: list[str] = []
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)

    @classmethod
    def open(cls, browser: Browser, url: str) -> Dashboard:
        """A new tab showing ``url`` (loaded), with its script errors and console recorded."""
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        dashboard = cls(page)
        page.goto(url)
        return dashboard

    def _on_page_error(self, error: PageError) -> None:
        self._problems.append(f"{error.name}: {error.message}"[:500])

    def _on_console(self, message: ConsoleMessage) -> None:
        # Console errors, and Chromium's own error log (blocked or failed loads), which
        # Playwright reports as console messages too.
        if message.type == "error":
            self._problems.append(f"{message.location.get('url', '')}: {message.text}"[:500])

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (promises awaited); a script error raises."""
        return self.page.evaluate(expression)

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
        self.page.locator("#api-key").fill(key)
        self.page.locator("#key-form button").click()

    def reload(self) -> None:
        self.page.reload()

    def mark(self) -> int:
        """A mark for ``problems(since=...)``."""
        return len(self._problems)

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
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=path)

    def problems(self, since: int = 0) -> list[str]:
        """Uncaught exceptions, console errors and browser errors (blocked or failed loads) so far
        (or since the mark ``since``)."""
        return self._problems[since:]


@pytest.fixture
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test-deps)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
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


def test_dashboard_asks_for_a_key_and_shows_live_metrics(site: Site, chromium: Browser) -> None:
    key = create_key(site.stack.env, "free")
    page = Dashboard.open(chromium, f"{site.base}/dashboard")
    try:
        # No key yet: the page asks for one (and opens no stream).
        assert page.connection() == "key" and page.asks_for_key()
        page.enter_key("bg_not-a-valid-key")
        wait_until(page.key_refused, 15, "the page to say that the key was refused")
        assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None

        # The key already holds every stream it may: the page says so, then connects by itself
        # once a slot is free.
        held = [Stream(site.base, key) for _ in range(STREAMS_PER_KEY)]
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
        mark = page.mark()
        page.reload()
        assert not page.asks_for_key()
        wait_until(lambda: page.connection() == "connected", 15, "the page to connect to the metrics stream")
        wait_until(lambda: page.metric("requests_1m") is not None, 15, "a first snapshot on the page")
        before = page.metric("requests_1m") or 0
        for name in ("latency", "throughput", "queue_depth"):
            shown = page.chart(name)
            assert shown["width"] > 0 and shown["height"] > 0 and shown["painted"] > 0, (name, shown)
            assert shown["points"] > 0, (name, shown)  # the snapshot's series: ~5 minutes of slots

        # Playwright's sync API keeps its asyncio loop running on this thread, and
        # submit_and_collect's asyncio.run needs a thread without one.
        with ThreadPoolExecutor(1) as pool:
            tasks = [{"prompt": f"dashboard {i}"} for i in range(64)]
            run = pool.submit(submit_and_collect, site.base, tasks, api_key=site.api_key).result()
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
