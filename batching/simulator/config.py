"""Run-time configuration of the simulator: what ``/_sim/config`` shows and may change.

The configuration stays a frozen ``SimulatorSettings``; an update builds a new one, so a
call sees one consistent configuration even when it changes mid-flight.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from batching.simulator.settings import SimulatorSettings

#: Fields fixed at start-up (the listening socket), hidden from ``/_sim/config``.
STARTUP_ONLY = frozenset({"host", "port"})
#: Fields that are shares of calls or items.
RATES = frozenset({"error_rate", "drop_item_rate"})


class ConfigError(ValueError):
    """A configuration value the simulator cannot take."""


def config_dict(config: SimulatorSettings) -> dict[str, Any]:
    """Return the run-time fields of ``config`` as JSON-ready data."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in STARTUP_ONLY}


def validate(config: SimulatorSettings) -> SimulatorSettings:
    """Return ``config`` when every run-time field is in range, else raise ``ConfigError``."""
    for name, value in config_dict(config).items():
        _check(name, value)
    return config


def apply_update(config: SimulatorSettings, update: Any) -> SimulatorSettings:
    """Return ``config`` with the fields of the JSON object ``update`` replaced, all checked."""
    if not isinstance(update, dict):
        raise ConfigError("the body must be a JSON object of configuration fields")
    known = config_dict(config)
    unknown = sorted(set(update) - set(known))
    if unknown:
        raise ConfigError(f"unknown or read-only fields: {', '.join(unknown)}; known: {', '.join(known)}")
    for name, value in update.items():
        _check(name, value)
    values = {name: _coerce(known[name], value) for name, value in update.items()}
    return dataclasses.replace(config, **values)


def _check(name: str, value: Any) -> None:
    default = getattr(SimulatorSettings, name)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number")
    if isinstance(default, int) and not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite")
    if name == "seed":
        return
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    if name in RATES and value > 1:
        raise ConfigError(f"{name} must be between 0 and 1")


def _coerce(current: Any, value: Any) -> Any:
    """Keep float fields floats when JSON carried a whole number (``"overhead_ms": 5``)."""
    return float(value) if isinstance(current, float) else value
