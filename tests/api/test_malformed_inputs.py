"""A corpus of malformed requests (``malformed_corpus.py``), sent over HTTP to a real API: each
gets its documented status and a JSON error in the endpoint's shape, and none of them enqueues
anything.

The API runs without a worker, so whatever it enqueued would still be in the queue: the queue
length and the number of task records are compared before and after every request (and a
valid request, the control, is seen to move both).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.api.malformed_corpus import (
    CORPUS,
    JSON_HEADERS,
    KEY,
    MAX_BODY_BYTES,
    MAX_CONTEXT_CHARS,
    MAX_PROMPT_CHARS,
    TASKS,
    Case,
    nested,
    task,
)
from tests.fuzz_stack import FuzzStack, api_only, error_of


@pytest.fixture(scope="module")
def stack(redis_url: str, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStack]:
    run_dir = tmp_path_factory.mktemp("malformed-run")
    limits = {
        "BATCHGATE_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "BATCHGATE_MAX_PROMPT_CHARS": str(MAX_PROMPT_CHARS),
        "BATCHGATE_MAX_CONTEXT_CHARS": str(MAX_CONTEXT_CHARS),
    }
    with api_only(redis_url, logs_dir, run_dir, **limits) as running_stack:
        yield running_stack


def send(
    stack: FuzzStack,
    method: str,
    path: str,
    body: bytes | None,
    sent_headers: dict[str, str],
    chunked: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these bytes and headers (the key placeholder filled in)."""
    parts = urlsplit(stack.api)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        actual = {name: stack.key if value == KEY else value for name, value in sent_headers.items()}
        payload: Any = body
        if chunked and body is not None:
            payload = (body[i : i + 8192] for i in range(0, len(body), 8192))
        connection.request(method, path, body=payload, headers=actual, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def assert_error(case: Case, status: int, got_headers: dict[str, str], raw: bytes) -> None:
    assert status == case.status, (case.name, status, raw[:300])
    assert got_headers.get("content-type", "").startswith("application/json"), (case.name, got_headers)
    body = json.loads(raw)
    if case.shape == "own" or status in (404, 405, 413):
        code = error_of(body)["code"]
    elif case.shape == "gemini":
        error = body["error"]
        assert set(body) == {"error"} and set(error) == {"code", "message", "status"}, body
        assert error["code"] == status and isinstance(error["message"], str), body
        code = error["status"]
    else:
        error = body["error"]
        assert set(body) == {"error"} and set(error) == {"message", "type", "param", "code"}, body
        code = error["code"]
    if case.code is not None:
        assert code == case.code, (case.name, body)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_a_malformed_request_is_refused_as_documented_and_enqueues_nothing(
    stack: FuzzStack, case: Case
) -> None:
    queued, records = stack.queue_length(), stack.task_records()
    status, got_headers, raw = send(stack, case.method, case.path, case.body, case.headers)
    assert_error(case, status, got_headers, raw)
    assert (stack.queue_length(), stack.task_records()) == (queued, records), case.name


def test_an_oversized_chunked_body_is_refused_with_413(stack: FuzzStack) -> None:
    """No Content-Length to check up front: the limit still holds while the body is read."""
    queued, records = stack.queue_length(), stack.task_records()
    body = task(context={"t": "x" * (2 * MAX_BODY_BYTES)})
    status, got_headers, raw = send(stack, "POST", TASKS, body, JSON_HEADERS, chunked=True)
    assert_error(Case("chunked", body, 413, "body_too_large"), status, got_headers, raw)
    assert (stack.queue_length(), stack.task_records()) == (queued, records)


def test_the_error_names_the_offending_field(stack: FuzzStack) -> None:
    for fields, where in (
        ({"generation": {"top_k": "5"}}, "generation.top_k"),
        ({"session_id": "my session"}, "session_id"),
        ({"colour": "red"}, "colour"),
    ):
        status, _, raw = send(stack, "POST", TASKS, task(**fields), JSON_HEADERS)
        assert status == 422
        assert error_of(json.loads(raw))["message"].startswith(f"{where}:"), raw


def test_valid_but_unusual_requests_are_accepted_and_enqueued(stack: FuzzStack) -> None:
    """The control: the counters above do move when something is enqueued."""
    bodies = [
        task(prompt="sent chunked, within the limit"),
        task(prompt="NUL \u0000 inside, escaped: valid JSON, passed on as text"),
        task(prompt="日本語の質問 🙂", context={"ключ": ["值", None, True, 1.5]}),
        task(context=nested(63)),
        task(prompt="x" * MAX_PROMPT_CHARS, generation={"seed": 2**31 - 1, "temperature": 2}),
        json.dumps({"prompt": "With a BOM-free UTF-8 body and odd spacing"}, indent=7).encode(),
    ]
    for number, body in enumerate(bodies, 1):
        queued, records = stack.queue_length(), stack.task_records()
        status, _, raw = send(stack, "POST", TASKS, body, JSON_HEADERS, chunked=number == 1)
        assert status == 202, (number, raw[:300])
        assert (stack.queue_length(), stack.task_records()) == (queued + 1, records + 1), number
