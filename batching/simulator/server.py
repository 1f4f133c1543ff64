"""HTTP surface of the simulator: Gemini's generateContent routes plus a ``/_sim`` control API.

``create_app`` builds the aiohttp app for a ``SimulatorSettings``; ``serve`` runs it until
SIGTERM/SIGINT (the ``python -m batching.simulator`` entry point); ``start_in_thread`` runs
it on a free port beside a test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from batching.simulator.batch_routes import add_batch_routes, reset_batches
from batching.simulator.config import ConfigError, config_dict
from batching.simulator.core import Answer, CallFailed, Simulator
from batching.simulator.cost import stream_delays_ms
from batching.simulator.protocol import BadRequest, check_thought_signatures, parse_generate_request
from batching.simulator.replies import blocked_body, error_body, response_body, split_text, stream_bodies
from batching.simulator.settings import SimulatorSettings

log = logging.getLogger(__name__)

SIMULATOR_KEY = web.AppKey("simulator", Simulator)
#: Pending connections the kernel queues before accept(): load tests open hundreds at once.
LISTEN_BACKLOG = 2048
#: Largest request body (packed prompts of many long items are big).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: How long a stopping server lets calls in progress finish.
SHUTDOWN_GRACE_S = 5.0
METHODS = frozenset({"generateContent", "streamGenerateContent", "countTokens"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: SimulatorSettings) -> web.Application:
    """Build the simulator app; its state is ``app[SIMULATOR_KEY]``."""
    app = web.Application(middlewares=[_gemini_errors], client_max_size=MAX_BODY_BYTES)
    app[SIMULATOR_KEY] = Simulator(settings)
    add_batch_routes(app, app[SIMULATOR_KEY])  # before models/{target}: it would take batch calls
    app.router.add_post(r"/{version:v1[a-z0-9]*}/models/{target}", _model_call)
    app.router.add_get("/health", _health)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_get("/_sim/requests", _requests)
    app.router.add_get("/_sim/config", _get_config)
    app.router.add_post("/_sim/config", _set_config)
    return app


def make_runner(app: web.Application, shutdown_timeout: float = SHUTDOWN_GRACE_S) -> web.AppRunner:
    """Return a runner without access logs (one line per call would cost more than the call)."""
    return web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)


async def serve(settings: SimulatorSettings) -> None:
    """Serve on ``settings.host:port`` until SIGTERM or SIGINT, then stop cleanly."""
    runner = make_runner(create_app(settings))
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=LISTEN_BACKLOG)
        await site.start()
        config = json.dumps(config_dict(settings))
        log.info("simulator ready on http://%s:%d %s", settings.host, settings.port, config)
        await stop.wait()
        log.info("simulator stopping")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


class SimulatorThread:
    """A simulator serving from its own event loop in a daemon thread (for tests)."""

    def __init__(self, settings: SimulatorSettings, host: str, port: int) -> None:
        self.app = create_app(settings)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None  # created by the thread, closed by it
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batchgate-simulator", daemon=True)
        self.url = ""
        self.port = 0

    @property
    def simulator(self) -> Simulator:
        """The live state; read it only while no call is running, or use ``/_sim/stats``."""
        return self.app[SIMULATOR_KEY]

    def start(self, timeout_s: float = 10.0) -> SimulatorThread:
        """Start serving and return once the port is bound."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("simulator thread did not start")
        if self._error is not None:
            raise RuntimeError("simulator thread failed to start") from self._error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving, close every connection and join the thread (idempotent)."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def __enter__(self) -> SimulatorThread:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = make_runner(self.app, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(self._start(runner))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            _cancel_pending(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start(self, runner: web.AppRunner) -> None:
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=LISTEN_BACKLOG)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.port = int(port)
        self.url = f"http://{host}:{self.port}"


def start_in_thread(
    settings: SimulatorSettings, *, host: str | None = None, port: int = 0
) -> SimulatorThread:
    """Serve ``settings`` from a background thread on a free port; stop it with ``.stop()``."""
    return SimulatorThread(settings, host or settings.host, port).start()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


# --- handlers ----------------------------------------------------------------------------


async def _model_call(request: web.Request) -> web.StreamResponse:
    """Answer ``models/{model}:{method}`` like Gemini's REST API."""
    started = time.monotonic()
    model, _, method = request.match_info["target"].rpartition(":")
    if not model or method not in METHODS:
        return _error(404, "NOT_FOUND", f"Method {request.path} is not found (simulated).")
    sim = request.app[SIMULATOR_KEY]
    try:
        try:
            body = await request.json()
        except ValueError as exc:
            raise BadRequest(f"Invalid JSON payload received. {exc}") from None
        if method == "countTokens" and isinstance(body, dict) and "generateContentRequest" in body:
            body = body["generateContentRequest"]
        call = parse_generate_request(body)
        check_thought_signatures(model, call)
        if method != "countTokens":
            sim.requests.append({"model": model, "method": method, "body": body})
    except BadRequest as exc:
        sim.stats.bad_requests += 1
        return _error(400, "INVALID_ARGUMENT", str(exc))
    if method == "countTokens":
        return web.json_response({"totalTokens": call.prompt_tokens})
    try:
        answer = sim.prepare(call, model=model)
    except CallFailed as failed:
        error = failed.error
        return _error(error.code, error.status, error.message, error.retry_delay_s, error.details)
    response_id = uuid.uuid4().hex[:24]
    if method == "streamGenerateContent":
        return await _stream(request, sim, answer, model, response_id)
    await sim.spend(answer)
    sim.record(answer)
    body = _answer_bodies(answer, model, response_id, stream=False)[0]
    # The call's own time, as Google's front ends report theirs, so a client can tell the
    # model's time from its own and the network's.
    took_ms = (time.monotonic() - started) * 1000
    return web.json_response(body, headers={"Server-Timing": f"gfet4t7; dur={took_ms:.3f}"})


def _answer_bodies(answer: Answer, model: str, response_id: str, *, stream: bool) -> list[dict[str, Any]]:
    """The response body (streamed: the chunks) of a composed answer; a blocked prompt is one
    body without candidates, streamed or not, and so is a function call (with its candidate)."""
    if answer.block_reason is not None:
        return [blocked_body(model, answer.prompt_tokens, response_id, answer.block_reason)]
    costs = (answer.prompt_tokens, answer.output_tokens, response_id, answer.finish)
    extra: dict[str, Any] = {"function_call": answer.function_call, "cached_tokens": answer.cached_tokens}
    if stream:
        return stream_bodies(model, answer.text, *costs, **extra)
    return [response_body(model, answer.text, *costs, **extra)]


async def _stream(
    request: web.Request, sim: Simulator, answer: Answer, model: str, response_id: str
) -> web.StreamResponse:
    """Send the answer in chunks, as SSE with ``alt=sse`` or else as one JSON array."""
    bodies = _answer_bodies(answer, model, response_id, stream=True)
    pieces = split_text(answer.text, len(bodies))
    lengths = [len(piece) for piece in pieces]
    delays = stream_delays_ms(sim.config, answer.prompt_tokens, answer.output_tokens, lengths)
    if request.query.get("alt") != "sse":
        await sim.spend(answer)
        sim.record(answer, streamed=True)
        return web.json_response(bodies)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    async with sim.slot(sum(delays) / 1000, answer.items):
        for number, (body, delay_ms) in enumerate(zip(bodies, delays, strict=True)):
            await asyncio.sleep(delay_ms / 1000)
            if number == 0:
                await response.prepare(request)
            await response.write(b"data: " + json.dumps(body).encode() + b"\r\n\r\n")
    await response.write_eof()
    sim.record(answer, streamed=True)
    return response


async def _health(request: web.Request) -> web.Response:
    """Liveness for ``make run`` and load balancers."""
    return web.json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    """Report what the simulator did since start or the last reset."""
    return web.json_response(request.app[SIMULATOR_KEY].stats_body())


async def _requests(request: web.Request) -> web.Response:
    """The newest generateContent bodies, oldest first (``?limit=N``, default all kept)."""
    log = list(request.app[SIMULATOR_KEY].requests)
    try:
        limit = int(request.query.get("limit", len(log)))
    except ValueError:
        return _error(400, "INVALID_ARGUMENT", "limit must be an integer")
    return web.json_response({"requests": log[-limit:] if limit > 0 else []})


async def _reset(request: web.Request) -> web.Response:
    """Zero stats and the quota window between tests or benchmark runs."""
    sim = request.app[SIMULATOR_KEY]
    sim.reset()
    reset_batches(request.app)
    return web.json_response(sim.stats_body())


async def _get_config(request: web.Request) -> web.Response:
    """Show the configuration new calls use."""
    return web.json_response(config_dict(request.app[SIMULATOR_KEY].config))


async def _set_config(request: web.Request) -> web.Response:
    """Change cost model or faults at run time (fields of ``SimulatorSettings``, not host/port)."""
    sim = request.app[SIMULATOR_KEY]
    try:
        try:
            update = await request.json()
        except ValueError:
            raise ConfigError("the body must be JSON") from None
        config = sim.configure(update)
    except ValueError as exc:  # ConfigError, or a value SimulatorSettings refuses (batch_outcome)
        return _error(400, "INVALID_ARGUMENT", str(exc))
    log.info("simulator config changed: %s", json.dumps(update))
    return web.json_response(config_dict(config))


@web.middleware
async def _gemini_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer unknown paths, methods and own bugs with Gemini-shaped errors, as the SDK expects."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, "NOT_FOUND", f"Path {request.path} is not found (simulated).")
    except web.HTTPMethodNotAllowed:
        return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} {request.path} is not allowed.")
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "INVALID_ARGUMENT", f"Request payload size exceeds {MAX_BODY_BYTES} bytes.")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("simulator bug while answering %s", request.path)
        return _error(500, "INTERNAL", "Unexpected error in the simulator itself.")


def _error(
    code: int, status: str, message: str, retry_delay_s: int | None = None, details: tuple[Any, ...] = ()
) -> web.Response:
    headers = {"Retry-After": str(retry_delay_s)} if retry_delay_s is not None else None
    body = error_body(code, status, message, retry_delay_s, details)
    return web.json_response(body, status=code, headers=headers)
