"""The checked-in dashboard bundle (``api/dashboard/dist``) is built from the sources beside it,
and the package ships it: no Node needed, here or at run time.

``make dashboard`` writes ``dist/SOURCES.sha256`` (``sha256sum`` lines for build.mjs,
package.json, package-lock.json and src/); these tests recompute it in Python.
"""

from __future__ import annotations

import configparser
import hashlib

from api import dashboard_view

DIST = dashboard_view.DIST_DIR
DASHBOARD = DIST.parent
MANIFEST = DIST / "SOURCES.sha256"
SETUP_CFG = DASHBOARD.parent.parent / "setup.cfg"
REBUILD = "run make dashboard (it needs Node) and commit api/dashboard/dist"


def source_files() -> list[str]:
    """The build's inputs, relative to api/dashboard, as build.mjs lists them (dotfiles left out)."""
    src = [
        path.relative_to(DASHBOARD).as_posix()
        for path in (DASHBOARD / "src").rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(DASHBOARD).parts)
    ]
    return sorted(["build.mjs", "package.json", "package-lock.json", *src])


def recorded() -> dict[str, str]:
    """The manifest's ``digest  path`` lines as {path: digest}."""
    digests = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        digest, _, path = line.partition("  ")
        digests[path] = digest
    return digests


def test_bundle_is_built_from_the_current_sources() -> None:
    assert MANIFEST.is_file(), f"{MANIFEST} is missing: {REBUILD}"
    current = {path: hashlib.sha256((DASHBOARD / path).read_bytes()).hexdigest() for path in source_files()}
    built = recorded()
    stale = sorted(
        [f"changed: {path}" for path in current.keys() & built.keys() if current[path] != built[path]]
        + [f"new: {path}" for path in current.keys() - built.keys()]
        + [f"gone: {path}" for path in built.keys() - current.keys()]
    )
    assert not stale, f"the dashboard bundle is stale ({', '.join(stale)}): {REBUILD}"


def test_bundle_has_the_page_and_its_assets() -> None:
    page = DIST / "index.html"
    assert page.is_file(), f"{page} is missing: {REBUILD}"
    assert page.read_bytes() == (DASHBOARD / "src" / "index.html").read_bytes(), (
        f"{page} is not src/index.html: {REBUILD}"
    )
    html = page.read_text(encoding="utf-8")
    for asset in ("app.js", "app.css"):
        assert (DIST / "assets" / asset).is_file(), f"dist/assets/{asset} is missing: {REBUILD}"
        assert f"/dashboard/assets/{asset}" in html


def test_the_package_ships_every_file_the_dashboard_serves() -> None:
    """setup.cfg's package_data must cover the page and its assets, or a non-editable install serves 503."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG, encoding="utf-8")
    package = DASHBOARD.parent
    patterns = [p.strip() for p in config["options.package_data"]["api"].split(",") if p.strip()]
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    served = [DIST / "index.html", *(path for path in (DIST / "assets").rglob("*") if path.is_file())]
    missing = [path.relative_to(package).as_posix() for path in served if path not in shipped]
    assert not missing, f"setup.cfg [options.package_data] api leaves out {missing}"
