"""The metrics snapshot and its stream need an API key, and one key holds at most
``BATCHGATE_METRICS_STREAMS_PER_KEY`` streams open across every replica.

Real Redis, worker, beat (a snapshot every 2 s) and two gunicorn replicas on one key prefix:
the stack's (default settings: 4 streams per key, an hour per stream) and a second one whose
streams end after ``SHORT_MAX_S``.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import pytest
import redis

from api import create_app
from api.stream_slots import HEARTBEAT_S, STALE_AFTER_S, streams_key
from batchgate.apikeys import ApiKeyStore, hash_key
from batchgate.settings import Settings
from tests.conftest import Stack, create_key
from tests.harness import Process, http_json, start_api, start_beat, stop_all, wait_until

CAP = Settings().edge.metrics_streams_per_key  # the stack runs with the default
SHORT_MAX_S = 2.0
STREAM = "/api/v1/metrics/stream"


class Stream:
    """One request to the stream: refused (``status``, ``body``), or open with its first event."""

    def __init__(
        self, base: str, key: str | None = None, *, header: bool = False, timeout: float = 10
    ) -> None:
        url = urlsplit(base)
        self.connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        path = STREAM if key is None or header else f"{STREAM}?key={quote(key, safe='')}"
        self.connection.request("GET", path, headers={"X-API-Key": key} if key and header else {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.body: Any = None
        self.first_event: list[str] = []
        if self.status != 200:
            self.body = json.loads(self.response.read())
            self.close()
            return
        while (line := self.response.readline().decode()) != "\n":
            assert line, "the stream ended before its first event"
            if not line.startswith(":"):
                self.first_event.append(line.rstrip("\n"))

    def close(self) -> None:
        """Hang up, as a browser tab does when it closes."""
        self.connection.close()


@pytest.fixture(scope="module")
def beat(stack: Stack, logs_dir: Path) -> Iterator[Process]:
    proc = start_beat(logs_dir, stack.env, name="beat-metrics-stream")
    try:
        wait_until(
            lambda: http_json("GET", f"{stack.api}/api/v1/metrics", headers=stack.headers)[0] == 200,
            30,
            "a first metrics snapshot",
        )
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def short(stack: Stack, beat: Process, logs_dir: Path) -> Iterator[str]:
    """A second replica on the same Redis and prefix whose streams end after ``SHORT_MAX_S``."""
    env = {**stack.env, "BATCHGATE_METRICS_STREAM_MAX_S": str(SHORT_MAX_S)}
    proc, url = start_api(logs_dir, env, name="api-short-streams")
    try:
        yield url
    finally:
        stop_all(proc)


@pytest.fixture
def db(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    yield client
    client.close()


def slots_of(stack: Stack, key: str) -> str:
    return streams_key(Settings.from_env(stack.env).broker.key_prefix, f"key:{hash_key(key)}")


def snapshot_of(stream: Stream) -> dict[str, Any]:
    assert stream.status == 200, stream.body
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.first_event[0] == "event: metrics"
    return json.loads(stream.first_event[1].removeprefix("data: "))  # type: ignore[no-any-return]


def test_without_a_valid_key_both_endpoints_answer_401_json(stack: Stack, beat: Process) -> None:
    for path in ("/api/v1/metrics", STREAM):
        status, headers, body = http_json("GET", f"{stack.api}{path}")
        assert status == 401 and headers["Content-Type"] == "application/json", (path, body)
        assert body["error"]["code"] == "missing_api_key"
        status, _, body = http_json("GET", f"{stack.api}{path}", headers={"X-API-Key": "bg_not-a-key"})
        assert status == 401 and body["error"]["code"] == "invalid_api_key", (path, body)
    refused = Stream(stack.api, "bg_not-a-key")
    assert refused.status == 401 and refused.body["error"]["code"] == "invalid_api_key"
    # The snapshot takes the key in a header only (a URL ends up in logs and histories).
    status, _, body = http_json("GET", f"{stack.api}/api/v1/metrics?key={stack.api_key}")
    assert status == 400 and body["error"]["code"] == "key_in_query"


def test_the_key_is_checked_before_anything_else(redis_url: str, tmp_path: Path) -> None:
    """With no snapshot yet, a keyless request is still 401, not 503 ``metrics_not_ready``."""
    settings = Settings.from_env(
        {
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_KEY_PREFIX": f"bgtest-{secrets.token_hex(4)}",
            "BATCHGATE_RUN_DIR": str(tmp_path),
        }
    )
    app = create_app(settings)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = ApiKeyStore(client, settings.broker.key_prefix).create("free")
        with app.test_client() as web:

            def answer(path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
                response = web.get(path, headers=headers or {})
                return response.status_code, response.get_json()["error"]["code"]

            assert answer("/api/v1/metrics") == (401, "missing_api_key")
            assert answer(STREAM) == (401, "missing_api_key")
            assert answer("/api/v1/metrics", {"X-API-Key": key}) == (503, "metrics_not_ready")
    finally:
        client.close()
        app.extensions["batchgate"].http_requests.close()


def test_with_a_key_the_snapshot_and_the_stream_answer(stack: Stack, beat: Process) -> None:
    key = create_key(stack.env, "free")
    status, _, snapshot = http_json("GET", f"{stack.api}/api/v1/metrics", headers={"X-API-Key": key})
    assert status == 200 and "queue_depth" in snapshot
    for header in (False, True):  # ?key= as EventSource sends it, or the header
        stream = Stream(stack.api, key, header=header)
        try:
            assert "queue_depth" in snapshot_of(stream)
            assert stream.headers["Cache-Control"] == "no-cache"
        finally:
            stream.close()


def test_the_cap_holds_across_replicas_and_per_key(stack: Stack, short: str, db: redis.Redis) -> None:
    key, other = create_key(stack.env, "free"), create_key(stack.env, "premium")
    held = [Stream(stack.api, key) for _ in range(CAP)]
    try:
        assert [s.status for s in held] == [200] * CAP
        assert db.zcard(slots_of(stack, key)) == CAP
        for base in (stack.api, short):  # ``short`` holds none of them, and still refuses
            refused = Stream(base, key)
            assert refused.status == 429, refused.body
            assert refused.body["error"]["code"] == "too_many_streams"
            assert set(refused.body["error"]) == {"code", "message"}
            assert int(refused.headers["Retry-After"]) > 0
        another = Stream(short, other)
        try:
            snapshot_of(another)
        finally:
            another.close()
    finally:
        for stream in held:
            stream.close()


def test_a_closed_stream_frees_its_slot(stack: Stack, short: str, db: redis.Redis) -> None:
    key = create_key(stack.env, "free")
    held = [Stream(stack.api, key) for _ in range(CAP)]
    try:
        assert Stream(short, key).status == 429
        held.pop().close()
        started = time.monotonic()

        def a_stream_again() -> Stream | None:
            attempt = Stream(stack.api, key)
            return attempt if attempt.status == 200 else None

        # The replica learns of the hang-up at its next write: the next snapshot, within ~2 s.
        held.append(wait_until(a_stream_again, 20, "the freed slot", interval=0.2))
        print(f"\nslot free again {time.monotonic() - started:.1f}s after the hang-up")
        assert db.zcard(slots_of(stack, key)) == CAP
    finally:
        for stream in held:
            stream.close()
    wait_until(lambda: db.zcard(slots_of(stack, key)) == 0, 20, "every slot released")


def test_a_stream_ends_by_itself_after_its_longest_time(stack: Stack, short: str, db: redis.Redis) -> None:
    key = create_key(stack.env, "free")
    started = time.monotonic()
    stream = Stream(short, key)
    try:
        snapshot_of(stream)
        stream.response.read()  # to the end of the stream
    finally:
        stream.close()
    elapsed = time.monotonic() - started
    print(f"\nstream of at most {SHORT_MAX_S}s ended after {elapsed:.2f}s")
    assert SHORT_MAX_S <= elapsed < SHORT_MAX_S + 3, elapsed
    wait_until(lambda: db.zcard(slots_of(stack, key)) == 0, 5, "the ended stream's slot released")


def test_an_open_stream_refreshes_its_slot(stack: Stack, beat: Process, db: redis.Redis) -> None:
    key = create_key(stack.env, "free")
    stream = Stream(stack.api, key)
    try:
        snapshot_of(stream)
        ((member, first),) = cast(
            list[tuple[str, float]], db.zrange(slots_of(stack, key), 0, -1, withscores=True)
        )
        # The replica writes the events in the background; the test reads none of them, which
        # the socket buffers absorb.
        wait_until(lambda: float(db.zscore(slots_of(stack, key), member) or 0) > first, 20, "a heartbeat")
    finally:
        stream.close()


def test_the_slots_of_a_killed_replica_expire(
    stack: Stack, beat: Process, logs_dir: Path, db: redis.Redis
) -> None:
    """A replica killed mid-stream releases nothing: its streams still count, until
    ``STALE_AFTER_S`` after their last heartbeat."""
    key = create_key(stack.env, "free")
    proc, doomed = start_api(logs_dir, stack.env, name="api-killed-mid-stream")
    try:
        held = [Stream(doomed, key) for _ in range(CAP)]
        assert [stream.status for stream in held] == [200] * CAP
        proc.stop(signal.SIGKILL)
    finally:
        stop_all(proc)
    killed_at = time.monotonic()
    for stream in held:
        stream.close()
    refused = Stream(stack.api, key)
    assert refused.status == 429 and refused.body["error"]["code"] == "too_many_streams"
    assert db.ttl(slots_of(stack, key)) > 0  # the set of a key nobody streams for expires too

    def a_stream() -> Stream | None:
        attempt = Stream(stack.api, key)
        return attempt if attempt.status == 200 else None

    stream = wait_until(a_stream, STALE_AFTER_S + 15, "the dead streams' slots to expire", interval=0.5)
    waited = time.monotonic() - killed_at
    print(f"\nslots of the killed replica free {waited:.1f}s after the kill")
    try:
        snapshot_of(stream)
        # The last heartbeat came at most HEARTBEAT_S before the kill.
        assert STALE_AFTER_S - HEARTBEAT_S - 1 <= waited <= STALE_AFTER_S + 5, waited
        assert db.zcard(slots_of(stack, key)) == 1
    finally:
        stream.close()
