"""The dashboard's blueprint, without a browser: it serves the built page and its assets, and
answers JSON errors when the page is not built or an asset is missing (the page itself, in
Chromium on a real stack: ``test_dashboard_browser.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from api import dashboard_view
from api.errors import register_error_handlers


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty build folder the blueprint serves from."""
    folder = tmp_path / "dist"
    folder.mkdir()
    monkeypatch.setattr(dashboard_view, "DIST_DIR", folder)
    return folder


@pytest.fixture
def client(dist: Path) -> Any:
    app = Flask(__name__)
    register_error_handlers(app)
    app.register_blueprint(dashboard_view.bp)
    return app.test_client()


def test_not_built_is_503_json(client: Any) -> None:
    response = client.get("/dashboard")
    assert response.status_code == 503
    assert response.json == {"error": {"code": "dashboard_not_built", "message": "run make dashboard"}}


def test_serves_the_built_page_and_assets(client: Any, dist: Path) -> None:
    (dist / "assets").mkdir()
    (dist / "index.html").write_text("<!doctype html><title>t</title>")
    (dist / "assets" / "app.js").write_text("console.log(1)")

    for path in ("/dashboard", "/dashboard/"):
        with client.get(path) as page:
            assert page.status_code == 200
            assert page.mimetype == "text/html"
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    with client.get("/dashboard/assets/app.js") as script:
        assert script.status_code == 200
        assert script.mimetype in ("text/javascript", "application/javascript")
        assert script.get_data() == b"console.log(1)"


def test_missing_or_escaping_asset_is_404_json(client: Any, dist: Path) -> None:
    (dist / "index.html").write_text("secret-ish")
    for path in (
        "/dashboard/assets/nope.js",
        "/dashboard/assets/../index.html",
        "/dashboard/assets/%2e%2e/index.html",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"
