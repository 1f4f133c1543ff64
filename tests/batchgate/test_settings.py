"""Settings: parsed once from a mapping, validated, and every one documented in docs/settings.md;
the README is a short front door."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchgate.settings import DEFAULT_SIMULATOR_URL, Settings, SettingsError
from stack.settings_doc import BEGIN, END, markdown_table

REPO = Path(__file__).resolve().parents[2]
SETTINGS_DOC = REPO / "docs" / "settings.md"


def test_defaults_and_overrides() -> None:
    settings = Settings.from_env({})
    assert settings.stack.nginx_port == 8080 and settings.api.api_ports == (8001, 8002, 8003)
    assert settings.simulator.port == 8090
    changed = Settings.from_env(
        {
            "BATCHGATE_API_PORTS": "9001, 9002",
            "BATCHGATE_BATCH_WINDOW_MS": "5",
            "BATCHGATE_SIM_ERROR_RATE": "0.5",
        }
    )
    assert changed.api.api_ports == (9001, 9002)
    assert changed.consumer.batch_window_ms == 5.0
    assert changed.simulator.error_rate == 0.5


@pytest.mark.parametrize(
    "env",
    [
        {"BATCHGATE_NGINX_PORT": "eighty"},
        {"BATCHGATE_STRATEGY": "sometimes"},
        {"BATCHGATE_BATCH_MAX_SIZE": "0"},
    ],
)
def test_bad_values_fail_at_start_up_with_the_variable_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_model_endpoint_selection() -> None:
    assert Settings.from_env({}).gemini.model_base_url == DEFAULT_SIMULATOR_URL
    assert Settings.from_env({"BATCHGATE_SIM_PORT": "9999"}).gemini.model_base_url == "http://127.0.0.1:9999"
    real = Settings.from_env({"GEMINI_API_KEY": "secret-key-123"})
    assert real.gemini.model_base_url is None and not real.gemini.uses_simulator
    both = Settings.from_env({"GEMINI_API_KEY": "k", "BATCHGATE_SIMULATOR_URL": "http://127.0.0.1:1"})
    assert both.gemini.model_base_url == "http://127.0.0.1:1" and both.gemini.uses_simulator
    assert "secret-key-123" not in repr(real)  # the key never reaches logs through repr


def test_the_docs_document_every_setting() -> None:
    text = SETTINGS_DOC.read_text()
    table = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert table == markdown_table(), "run `make docs` to refresh the settings table in docs/settings.md"


def test_the_readme_is_a_front_door_with_the_two_commands_and_a_curl_first() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    first_screen = "\n".join(lines[:60])
    assert "make run" in first_screen and "make test" in first_screen and "curl " in first_screen
    linked = {line.split("](docs/")[1].split(")")[0] for line in lines if "](docs/" in line}
    assert linked == {path.name for path in (REPO / "docs").glob("*.md")}  # every page linked, all exist
