"""The simulator every simulator test module drives: one per module, fast and fault-free, its
configuration and stats reset before each test that asks for ``baseline``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google import genai

from batching.simulator import SimulatorThread, start_in_thread
from batching.simulator.config import config_dict
from batching.simulator.settings import SimulatorSettings
from tests.batching.sim_helpers import API_VERSIONS, sdk_client
from tests.harness import http_json

#: Fast and fault-free; tests change what they exercise through /_sim/config.
BASELINE = SimulatorSettings(
    overhead_ms=1.0,
    per_input_token_ms=0.0,
    per_output_token_ms=0.0,
    max_concurrent=0,
    rpm=0,
    error_rate=0.0,
    drop_item_rate=0.0,
    seed=7,
)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    handle = start_in_thread(BASELINE)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def baseline(sim: SimulatorThread) -> None:
    status, _, body = http_json("POST", f"{sim.url}/_sim/config", config_dict(BASELINE))
    assert status == 200, body
    assert http_json("POST", f"{sim.url}/_sim/reset")[0] == 200


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    """Each API version the SDK speaks; a module that exercises only one overrides this."""
    return str(request.param)


@pytest.fixture
def client(sim: SimulatorThread, api_version: str) -> Iterator[genai.Client]:
    sdk = sdk_client(sim.url, api_version)
    try:
        yield sdk
    finally:
        sdk.close()
