"""The request id nginx gives every request (``X-Request-ID``), kept in the task record so a
task can be found in the edge's access log and the other way round."""

from __future__ import annotations

import re

from flask import request

#: What nginx passes on (its own id is 32 hex digits); anything else is ignored, not refused.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id() -> str | None:
    """This request's ``X-Request-ID`` when it is a sane token (at most 128 of [A-Za-z0-9._-])."""
    value = request.headers.get("X-Request-ID", "")
    return value if _REQUEST_ID.fullmatch(value) else None
