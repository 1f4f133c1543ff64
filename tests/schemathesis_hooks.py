"""Custom schemathesis checks and a log of every request, for ``tests/e2e/test_fuzz.py``.

Loaded by ``st run`` through ``tests/schemathesis.toml`` (``hooks = "tests.schemathesis_hooks"``).
``BATCHGATE_FUZZ_ANONYMOUS=1`` marks the run without credentials; ``BATCHGATE_FUZZ_LOG`` names a
JSONL file that gets one line per request (operation, status, whether a credential was sent),
so the test tallies what was sent and answered independently of schemathesis' own report.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import schemathesis

#: Where a request may carry a batchgate key (``api.edge.api_key_sent``).
CREDENTIAL_HEADERS = ("x-api-key", "x-goog-api-key", "authorization")
GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/")
OPENAI_PATH = "/v1/chat/completions"
#: Statuses the drop-ins answer in batchgate's own shape: the path or method does not route
#: (404, 405), or the body is refused before any view runs (413, as nginx does in front).
OWN_SHAPE_ON_DROPINS = (404, 405, 413)

_lock = threading.Lock()


def sent_credential(request: Any) -> bool:
    """Whether the request carried a key in any place batchgate reads one from."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    if any(str(headers.get(name, "")).strip() for name in CREDENTIAL_HEADERS):
        return True
    query = parse_qs(urlsplit(request.url).query)
    return any(value.strip() for value in query.get("key", []))


def is_secured(case: Any) -> bool:
    """Whether the operation declares that it needs a key."""
    return any(True for _ in case.operation.security.iter_parameters())


def _is_own_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(body) == {"error"}
        and set(error) == {"code", "message"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
    )


def _is_gemini_error(body: Any, status: int) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(error) == {"code", "message", "status"}
        and error["code"] == status
        and isinstance(error["message"], str)
        and isinstance(error["status"], str)
    )


def _is_openai_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(error) == {"message", "type", "param", "code"}
        and isinstance(error["message"], str)
        and isinstance(error["type"], str)
    )


@schemathesis.check
def batchgate_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is JSON in the error shape of the API the endpoint speaks."""
    status = response.status_code
    if status < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{status} with a body that is not JSON: {response.content[:200]!r}") from None
    path = case.operation.path
    if status in OWN_SHAPE_ON_DROPINS and _is_own_error(body):
        return None
    if path.startswith(GEMINI_PREFIXES):
        ok = _is_gemini_error(body, status)
    elif path == OPENAI_PATH:
        ok = _is_openai_error(body)
    else:
        ok = _is_own_error(body)
    if not ok:
        raise AssertionError(f"{status} from {path} in the wrong error shape: {body!r}")
    return None


@schemathesis.check
def batchgate_refuses_anonymous(ctx: Any, response: Any, case: Any) -> bool | None:
    """In the run without a key: a secured operation never succeeds, and without any
    credential at all it answers 401 before anything else."""
    if os.environ.get("BATCHGATE_FUZZ_ANONYMOUS") != "1" or not is_secured(case):
        return None
    if case.method.upper() != case.operation.method.upper():
        return None  # another method on the route (OPTIONS, TRACE, ...): not this operation
    status = response.status_code
    if status < 400:
        raise AssertionError(f"{case.operation.label} accepted a request without a valid key ({status})")
    if not sent_credential(response.request) and status not in (401, *OWN_SHAPE_ON_DROPINS):
        raise AssertionError(f"{case.operation.label} answered {status}, not 401, to a request without a key")
    return None


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Log the request (see the module docstring)."""
    path = os.environ.get("BATCHGATE_FUZZ_LOG")
    if not path:
        return
    line = {
        "operation": case.operation.label,
        "method": case.method.upper(),
        "own_method": case.method.upper() == case.operation.method.upper(),
        "status": response.status_code,
        "secured": is_secured(case),
        "credential": sent_credential(response.request),
        "elapsed_s": round(response.elapsed, 3),
    }
    with _lock, open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
