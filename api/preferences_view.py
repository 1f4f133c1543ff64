"""Read, replace and forget a user's preferences (``/api/v1/users/<user_id>/preferences``).

The body of a PUT is the whole document, and GET answers the document as stored, so a
client can read, change and write it back. A user's preferences belong to the API key that
stored them: another key sees none (404), exactly as for a user without any.
"""

from __future__ import annotations

import re
from email.utils import formatdate

from flask import Blueprint, Response, jsonify
from pydantic import ValidationError

from api.edge import authenticate
from api.errors import ApiError
from api.preferences import Preferences, StoredPreferences
from api.request_body import json_body
from api.schemas import IDENTIFIER
from api.services import Services, services
from api.user_preferences import database_errors, preference_store

bp = Blueprint("preferences", __name__, url_prefix="/api/v1")

_USER_ID = re.compile(IDENTIFIER)


@bp.get("/users/<user_id>/preferences")
def show(user_id: str) -> Response:
    """The stored preferences (404 when none)."""
    svc = services()
    owner = _owner_of(svc, user_id)
    with database_errors():
        stored = preference_store(svc).get(owner, user_id)
    if stored is None:
        raise ApiError(404, "not_found", f"no preferences stored for user {user_id!r}")
    return _document(stored)


@bp.put("/users/<user_id>/preferences")
def replace(user_id: str) -> Response:
    """Store the body as the user's whole preferences; 200 with the document stored."""
    svc = services()
    owner = _owner_of(svc, user_id)
    preferences = _parse_body()
    with database_errors():
        stored = preference_store(svc).put(owner, user_id, preferences)
    return _document(stored)


@bp.delete("/users/<user_id>/preferences")
def forget(user_id: str) -> Response:
    """Forget the user's preferences: 204 (404 when there were none)."""
    svc = services()
    owner = _owner_of(svc, user_id)
    with database_errors():
        found = preference_store(svc).delete(owner, user_id)
    if not found:
        raise ApiError(404, "not_found", f"no preferences stored for user {user_id!r}")
    return Response(status=204)


def _owner_of(svc: Services, user_id: str) -> str:
    """The caller's owner id (401 without a valid key), after checking the user id (422)."""
    caller = authenticate(svc)
    if not _USER_ID.fullmatch(user_id):
        raise ApiError(
            422,
            "invalid_request",
            "user_id: 1 to 128 letters, digits and . _ : - (starting with a letter or digit)",
        )
    return caller.owner or ""


def _parse_body() -> Preferences:
    body = json_body("the preferences")
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    try:
        return Preferences.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from None


def _document(stored: StoredPreferences) -> Response:
    response = jsonify(stored.preferences.document())
    response.headers["Last-Modified"] = formatdate(stored.updated_at, usegmt=True)
    return response
