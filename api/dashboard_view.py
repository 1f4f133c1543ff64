"""The live dashboard: the page and its assets, built by ``make dashboard`` into ``api/dashboard/dist``.

Node is needed only to build; at run time Flask serves the built files as they are.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from api.errors import error_response

bp = Blueprint("dashboard", __name__)

#: Where ``npm run build`` writes the page (index.html) and its assets (assets/).
DIST_DIR = Path(__file__).resolve().parent / "dashboard" / "dist"

#: Everything the page loads comes from this origin: no CDN, no third-party request.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@bp.get("/dashboard")
@bp.get("/dashboard/")
def page() -> Response:
    """The dashboard page; 503 until its assets are built."""
    if not (DIST_DIR / "index.html").is_file():
        return error_response(503, "dashboard_not_built", "run make dashboard")
    response = send_from_directory(DIST_DIR, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/dashboard/assets/<path:filename>")
def asset(filename: str) -> Response:
    """A built asset (404 as JSON when missing); revalidated on every load, so a rebuild shows at once."""
    response = send_from_directory(DIST_DIR / "assets", filename, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
