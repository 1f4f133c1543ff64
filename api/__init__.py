"""The thin HTTP edge: validates, enqueues and reads results; never calls a model."""

from __future__ import annotations

from flask import Flask

from api.errors import register_error_handlers
from api.services import Services
from batchgate.settings import Settings


def create_app(settings: Settings, services: Services | None = None) -> Flask:
    """Build the Flask app for ``settings`` (services are built here unless given)."""
    from api import health_view, tasks_view

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["batchgate"] = services or Services.build(settings)
    register_error_handlers(app)
    app.register_blueprint(tasks_view.bp)
    app.register_blueprint(health_view.bp)
    return app
