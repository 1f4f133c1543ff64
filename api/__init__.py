"""The thin HTTP edge: validates, enqueues and reads results; never calls a model."""

from __future__ import annotations

import logging

import redis
from flask import Flask

from api.database import DatabaseUnavailable
from api.edge import refuse_key_in_query
from api.errors import register_error_handlers
from api.request_body import StrictJSONProvider, limit_chunked_body
from api.services import Services
from batchgate.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the Flask app for ``settings`` (read from the environment when not given, so
    ``flask --app api run`` and ``flask --app api routes`` work); services are built here
    unless given."""
    settings = settings or Settings.from_env()
    from api import (
        baseline_view,
        dashboard_view,
        gemini_view,
        health_view,
        metrics_view,
        openai_view,
        openapi_view,
        preferences_view,
        sessions_view,
        task_events_view,
        tasks_view,
        usage_view,
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_body_bytes
    app.json = StrictJSONProvider(app)
    app.before_request(limit_chunked_body)
    app.before_request(refuse_key_in_query)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["batchgate"] = services or Services.build(settings)
    register_error_handlers(app)
    app.register_blueprint(tasks_view.bp)
    app.register_blueprint(health_view.bp)
    app.register_blueprint(metrics_view.bp)
    app.register_blueprint(dashboard_view.bp)
    app.register_blueprint(baseline_view.bp)
    app.register_blueprint(task_events_view.bp)
    app.register_blueprint(gemini_view.bp)
    app.register_blueprint(openai_view.bp)
    app.register_blueprint(sessions_view.bp)
    app.register_blueprint(preferences_view.bp)
    app.register_blueprint(openapi_view.bp)
    app.register_blueprint(usage_view.bp)
    app.after_request(metrics_view.count_http_request)
    _ensure_demo_key(app.extensions["batchgate"])
    _migrate_database(app.extensions["batchgate"])
    return app


def _ensure_demo_key(svc: Services) -> None:
    """Make ``BATCHGATE_DEMO_API_KEY`` exist with the premium tier (every replica may try)."""
    key = svc.settings.edge.demo_api_key
    if not key or not svc.settings.edge.auth_enabled:
        return
    try:
        found = svc.apikeys.lookup(key)
        if found is None or found.tier != "premium":
            svc.apikeys.create("premium", "demo (BATCHGATE_DEMO_API_KEY)", key=key)
    except redis.RedisError as exc:
        log.warning("could not register the demo API key yet: %s", exc)


def _migrate_database(svc: Services) -> None:
    """Bring the preferences schema up to date; if the database cannot be reached, start
    anyway: the preference endpoints answer 503 and the first use tries again."""
    try:
        svc.database.ensure_migrated()
    except DatabaseUnavailable as exc:
        log.warning(
            "preferences database %s unavailable at start (%s); preference endpoints answer 503 "
            "until it can be reached",
            svc.database.describe_url(),
            exc,
        )
