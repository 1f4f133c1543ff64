"""Building the compose images anywhere: what reaches a build as a secret, and where the stack
answers; the builds themselves run in `make compose-test` (they need a Docker engine)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stack import images
from stack.compose_cli import entry_url
from stack.images import OFFICIAL, STAND_INS, pip_secrets


def test_pip_settings_reach_the_build_as_secrets_without_local_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    machine = {
        "extra-index-url": "file:///opt/pypi/simple https://user:token@mirror.example/simple",
        "find-links": "/opt/wheels",
    }
    monkeypatch.setattr(images, "_pip_config", lambda environ: machine)
    secrets = pip_secrets(tmp_path, {"PIP_CERT": str(ca), "PIP_INDEX_URL": "https://pypi.example/simple"})
    assert secrets["pip_ca"] == ca
    conf = secrets["pip_conf"].read_text()
    assert conf == (
        "[global]\nindex-url = https://pypi.example/simple\n"
        "extra-index-url = https://user:token@mirror.example/simple\n"
    )  # a local index or wheel folder does not exist inside a build: left out
    assert stat.S_IMODE(secrets["pip_conf"].stat().st_mode) == 0o600  # it may hold a token


def test_nothing_to_pass_means_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "_pip_config", lambda environ: {"find-links": "/opt/wheels"})
    assert pip_secrets(tmp_path, {"PIP_CERT": str(tmp_path / "missing.pem")}) == {}


def test_every_official_base_image_has_a_local_stand_in() -> None:
    assert set(STAND_INS) == set(OFFICIAL)
    for _name, dockerfile in STAND_INS.values():
        text = (images.IMAGES_DIR / dockerfile).read_text()
        assert text.startswith("#") and "ARG DEBIAN_IMAGE=" in text and "FROM ${DEBIAN_IMAGE}" in text


def test_the_entry_url_follows_the_published_ports() -> None:
    assert entry_url({}) == "https://127.0.0.1:443"
    assert entry_url({"BATCHGATE_HTTPS_PORT": "8443"}) == "https://127.0.0.1:8443"
    assert (
        entry_url({"BATCHGATE_NGINX_TLS_PORT": "0", "BATCHGATE_HTTP_PORT": "8080"}) == "http://127.0.0.1:8080"
    )
