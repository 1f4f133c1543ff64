"""``python -m batching.simulator``: serve the simulator configured by ``BATCHGATE_SIM_*``."""

from __future__ import annotations

import asyncio
import logging

from batching.simulator.config import ConfigError, validate
from batching.simulator.server import serve
from batching.simulator.settings import SimulatorSettings


def main() -> None:
    """Read the settings once and serve until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = validate(SimulatorSettings.from_env())
    except (ValueError, ConfigError) as exc:
        raise SystemExit(f"batchgate simulator: bad setting: {exc}") from None
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
