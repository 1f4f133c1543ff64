"""Fuzzing the public API over its OpenAPI document, against a real stack (simulator, worker,
beat, gunicorn API).

schemathesis (``tests/schemathesis.toml``: all four phases, seeded, bounded) runs twice: with
a valid key, where every response must be documented and conform to the document (status,
content type, headers, body) and none may be a server error; and without any key, where no
operation that needs a key may succeed. Its own report is checked, and so is an independent
log of every request it sent (``tests/schemathesis_hooks.py``). Then tasks are probed across
keys: another key's task ids and random ids are all 404.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from api.openapi_view import load_spec
from tests.fuzz_stack import FuzzStack, error_of, full_stack
from tests.harness import REPO

CONFIG = REPO / "tests" / "schemathesis.toml"
#: Where the configuration's credentials begin (left out of the run without a key).
CREDENTIALS = "# --- credentials"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def stack(redis_url: str, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStack]:
    with full_stack(redis_url, logs_dir, tmp_path_factory.mktemp("fuzz-run")) as running_stack:
        yield running_stack


def operations() -> int:
    return sum(1 for item in load_spec()["paths"].values() for method in item if method in HTTP_METHODS)


@dataclass
class Run:
    """One ``st run`` over the document as the API serves it, in ``work``."""

    label: str
    work: Path
    process: subprocess.Popen[str]
    started: float

    def result(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Its JSON report and the request log, once it has finished (and succeeded)."""
        # ~100 s alone on a slow 2-core machine (calibration ~120 ms), up to 150 s beside the
        # suite's other worker: a bound that catches a hang, not a speed test.
        output, _ = self.process.communicate(timeout=240)
        (self.work / "output.txt").write_text(output)
        reports = sorted((self.work / "report").glob("*.json"))
        assert reports, output[-5000:]
        report = json.loads(reports[-1].read_text())
        log = self.work / "requests.jsonl"
        lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        statuses = sorted(Counter(line["status"] for line in lines).items())
        print(
            f"\nschemathesis ({self.label}): {report['test_cases']['generated']} cases, {len(lines)} requests, "
            f"{time.monotonic() - self.started:.1f}s; statuses {statuses}"
        )
        assert self.process.returncode == 0, output[-8000:]
        return report, lines


def start_schemathesis(stack: FuzzStack, work: Path, key: str | None) -> Run:
    config = work / "schemathesis.toml"
    text = CONFIG.read_text()
    config.write_text(text if key else text[: text.index(CREDENTIALS)])
    # The document as the API serves it, from a file: loaded from its URL, schemathesis would
    # leave out the operation at that URL (GET /api/v1/openapi.json) instead of testing it.
    document = work / "openapi.json"
    document.write_bytes(requests.get(f"{stack.api}/api/v1/openapi.json", timeout=10).content)
    env = {
        **os.environ,
        "BATCHGATE_FUZZ_LOG": str(work / "requests.jsonl"),
        "BATCHGATE_FUZZ_ANONYMOUS": "0" if key else "1",
        "BATCHGATE_FUZZ_API_KEY": key or "",
        "HYPOTHESIS_STORAGE_DIRECTORY": str(work / "hypothesis"),
    }
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run"]
    argv += [str(document), "--url", stack.api, "--report", "json", "--report-dir", str(work / "report")]
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return Run("valid key" if key else "no key", work, process, time.monotonic())


@pytest.fixture(scope="module")
def runs(stack: FuzzStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """Both runs at once (each waits on the network more than it computes)."""
    keyed = start_schemathesis(stack, tmp_path_factory.mktemp("st-key"), stack.key)
    anonymous = start_schemathesis(stack, tmp_path_factory.mktemp("st-anonymous"), None)
    yield {"key": keyed, "anonymous": anonymous}
    for run in (keyed, anonymous):
        if run.process.poll() is None:  # a test that never read its result
            run.process.kill()
            run.process.communicate()


def assert_clean(report: dict[str, Any]) -> None:
    assert report["stop_reason"] == "completed" and report["complete"], report
    assert report["failures"] == [] and report["errors"] == [], report
    assert report["operations"]["tested"] == report["operations"]["selected"] == operations(), report[
        "operations"
    ]
    assert {name: phase["status"] for name, phase in report["phases"].items()} == {
        "examples": "success",
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }


@pytest.mark.timeout(300)
def test_schemathesis_with_a_valid_key_finds_no_server_error_and_no_spec_violation(
    runs: dict[str, Run],
) -> None:
    report, lines = runs["key"].result()
    assert_clean(report)
    assert report["test_cases"]["generated"] >= 1000
    assert [line for line in lines if line["status"] >= 500] == []
    # Every operation succeeded at least once, so the checks saw its success responses too
    # (tests/fuzz_stack.py makes what the document's examples name: session ana-1, user ada).
    succeeded = {line["operation"] for line in lines if line["own_method"] and line["status"] < 300}
    assert len(succeeded) == operations(), sorted(succeeded)


@pytest.mark.timeout(300)
def test_schemathesis_without_a_key_gets_nothing_from_any_operation_that_needs_one(
    runs: dict[str, Run],
) -> None:
    report, lines = runs["anonymous"].result()
    assert_clean(report)
    assert [line for line in lines if line["status"] >= 500] == []
    secured = [line for line in lines if line["secured"] and line["own_method"]]
    assert len(secured) >= 500
    accepted = [line for line in secured if line["status"] < 400]
    assert accepted == []
    keyless = [line for line in secured if not line["credential"]]
    keyless_statuses = Counter(line["status"] for line in keyless)
    assert keyless and set(keyless_statuses) <= {401, 404}, keyless_statuses
    assert {line["status"] for line in secured if line["credential"]} <= {400, 401, 404, 413, 415, 422}


def test_another_keys_tasks_and_random_ids_are_all_404(stack: FuzzStack) -> None:
    """1,000 reads of key A's task ids with key B, and 1,000 random ids with key A."""
    own = {"X-API-Key": stack.key}
    ids = []
    for number in range(20):
        response = requests.post(
            f"{stack.api}/api/v1/tasks", json={"prompt": f"Count to {number}"}, headers=own, timeout=10
        )
        assert response.status_code in (200, 202), response.text
        ids.append(response.json()["id"])
    local = threading.local()
    opened: list[requests.Session] = []

    def get(path: str, key: str) -> tuple[int, Any, str]:
        """One GET on this thread's keep-alive connection."""
        if not hasattr(local, "session"):
            local.session = requests.Session()
            opened.append(local.session)
        response = local.session.get(f"{stack.api}{path}", headers={"X-API-Key": key}, timeout=10)
        return response.status_code, response.json(), response.headers.get("Content-Type", "")

    # Key B reads key A's tasks (one read in a hundred asks for the task's event stream instead).
    foreign = [(f"/api/v1/tasks/{ids[n % len(ids)]}", stack.other_key) for n in range(1000)]
    foreign[::100] = [(f"/api/v1/tasks/{ids[n]}/events", stack.other_key) for n in range(10)]
    random_ids = [(f"/api/v1/tasks/{secrets.token_hex(16)}", stack.key) for _ in range(1000)]
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda probe: get(*probe), foreign + random_ids))
    finally:
        for session in opened:
            session.close()
    elapsed = time.monotonic() - started
    print(f"\n2,000 probes in {elapsed:.1f}s")
    assert Counter(status for status, _, _ in answers) == {404: 2000}
    for _, body, content_type in answers:
        assert content_type.startswith("application/json")
        assert error_of(body)["code"] == "not_found"
    assert elapsed < 20
    # The owner reads every one of them.
    owner = [requests.get(f"{stack.api}/api/v1/tasks/{task_id}", headers=own, timeout=10) for task_id in ids]
    assert {response.status_code for response in owner} == {200}
