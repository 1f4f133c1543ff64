"""Conversation sessions: read or clear a session's history (in the namespace of the caller's
tenant: any key of the tenant may, no other tenant can tell that it exists)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify

from api.edge import authenticate
from api.errors import ApiError
from api.schemas import IDENTIFIER
from api.services import services
from batchgate.sessions import SessionUnreadable

bp = Blueprint("sessions", __name__, url_prefix="/api/v1")

_VALID_ID = re.compile(IDENTIFIER)


@bp.get("/sessions/<session_id>")
def show(session_id: str) -> Response:
    """The session's turns, oldest first, and how many of its tasks were accepted and landed."""
    svc = services()
    tenant = authenticate(svc).tenant
    try:
        session = svc.sessions.read(tenant, session_id) if _VALID_ID.match(session_id) else None
    except SessionUnreadable:
        raise ApiError(
            409, "session_unreadable", f"session {session_id!r} cannot be read; start a new session_id"
        ) from None
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return jsonify(session)


@bp.delete("/sessions/<session_id>")
def clear(session_id: str) -> Response:
    """Forget the session's history (204); turns still in flight land afterwards, in order."""
    svc = services()
    tenant = authenticate(svc).tenant
    if not (_VALID_ID.match(session_id) and svc.sessions.clear(tenant, session_id)):
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return Response(status=204)
