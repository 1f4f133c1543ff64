"""What request bodies are accepted: strict JSON, within ``BATCHGATE_MAX_BODY_BYTES``.

Python's ``json`` module accepts more than RFC 8259 and raises more than ``ValueError``:
``NaN``/``Infinity`` literals, numbers too large for a float (``1e400`` becomes infinity),
strings holding lone UTF-16 surrogates (``"\\ud800"``, which no UTF-8 encoder accepts: Redis,
Celery and the model client would fail on them later) and, for deeply nested input,
``RecursionError``. Flask's ``request.get_json(silent=True)`` turns only ``ValueError`` into
``None``, so all of these are raised as ``ValueError`` here, and every view answers them like
any malformed body (``400 invalid_json``) before anything is enqueued.

A chunked body has no ``Content-Length`` to check up front, and werkzeug cuts it at the limit
silently instead of refusing it (what is left may even parse); ``limit_chunked_body`` reads it
first and answers ``413`` when it is over the limit.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

from flask import current_app, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from api.errors import ApiError

#: Deeper nesting is refused: no request needs it, and every later stage recurses over it.
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with strict parsing of request bodies (see the module docstring)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = json.loads(s, parse_constant=_refuse_constant, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        check_strict(value)
        return value


def json_body(what: str) -> Any:
    """The request's decoded JSON body: 415 unless it is sent as JSON, 400 if it does not parse;
    ``what`` names the thing for the 415 message (``the task``, ``the preferences``)."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", f"send {what} as JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON")
    return body


def check_strict(value: Any) -> None:
    """Raise ValueError if ``value`` nests deeper than MAX_DEPTH, holds a lone surrogate or a
    number that is not finite."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ValueError("a JSON string holds a lone UTF-16 surrogate")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("a JSON number is too large")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def limit_chunked_body() -> None:
    """Before-request hook: read a chunked body up to the limit; 413 beyond it, else hand it on
    to the view as an ordinary body with a ``Content-Length``."""
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    environ = request.environ
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
