"""What the worker tests share: a fast simulator in a thread, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batching.simulator.server import SimulatorThread, start_in_thread
from batching.simulator.settings import SimulatorSettings
from tests.harness import free_port


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    handle = start_in_thread(SimulatorSettings(overhead_ms=5.0), host="127.0.0.1", port=free_port())
    try:
        yield handle
    finally:
        handle.stop()
