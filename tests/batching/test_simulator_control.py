"""The simulator's control surface (/_sim/config, /_sim/reset) and its ``python -m`` entry point."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from typing import Any

import pytest
from google import genai

from batching.simulator import SimulatorThread
from batching.simulator.config import ConfigError, apply_update, config_dict
from tests.batching.conftest import BASELINE
from tests.batching.sim_helpers import MODEL, configure, sim_stats
from tests.harness import clean_env, free_port, http_json, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]


# --- control surface --------------------------------------------------------------------------


def test_config_shows_runtime_fields_and_validates_updates(sim: SimulatorThread) -> None:
    status, _, shown = http_json("GET", f"{sim.url}/_sim/config")
    assert status == 200 and shown == config_dict(BASELINE)
    assert "host" not in shown and "port" not in shown
    bad_updates: list[Any] = [
        {"error_rate": 1.5},
        {"drop_item_rate": -0.1},
        {"max_concurrent": 1.5},
        {"max_concurrent": True},
        {"overhead_ms": "fast"},
        {"rpm": -1},
        {"poison_marker": 3},
        {"port": 1},
        {"nonsense": 1},
        ["error_rate", 1],
    ]
    for update in bad_updates:
        status, _, reply = http_json("POST", f"{sim.url}/_sim/config", update)
        assert status == 400 and reply["error"]["code"] == 400 and reply["error"]["message"], update
    assert http_json("GET", f"{sim.url}/_sim/config")[2] == shown  # nothing half-applied
    changed = configure(sim, overhead_ms=5, rpm=100, seed=11)
    assert changed == {**shown, "overhead_ms": 5.0, "rpm": 100, "seed": 11}
    assert isinstance(changed["overhead_ms"], float)


def test_apply_update_rejects_the_whole_update_when_one_field_is_bad() -> None:
    with pytest.raises(ConfigError):
        apply_update(BASELINE, {"rpm": 5, "error_rate": 2})
    assert apply_update(BASELINE, {"rpm": 5}) == dataclasses.replace(BASELINE, rpm=5)


def test_reset_zeroes_the_stats(client: genai.Client, sim: SimulatorThread) -> None:
    client.models.generate_content(model=MODEL, contents="count me")
    assert sim_stats(sim)["calls"] == 1
    status, _, after = http_json("POST", f"{sim.url}/_sim/reset")
    assert status == 200
    stats = sim_stats(sim)
    assert stats == after
    assert all(value == 0 for key, value in stats.items() if key != "errors_by_code")


# --- entry point ------------------------------------------------------------------------------


def test_module_entry_point_serves_env_settings_and_stops_on_sigterm() -> None:
    port = free_port()
    env = clean_env(BATCHGATE_SIM_PORT=str(port), BATCHGATE_SIM_RPM="7", BATCHGATE_SIM_OVERHEAD_MS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "batching.simulator"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_json("GET", f"{url}/health", timeout=1)[0] == 200, 15, "simulator")
        config = http_json("GET", f"{url}/_sim/config")[2]
        assert (config["rpm"], config["overhead_ms"]) == (7, 1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"ready on http://127.0.0.1:{port}" in stderr
