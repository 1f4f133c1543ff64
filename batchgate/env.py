"""Parse ``PREFIX + FIELD`` environment variables into a frozen dataclass, by the field's type.

Shared by every settings section, so one variable means the same thing wherever it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def load_section(cls: type[T], env: Mapping[str, str], prefix: str = "BATCHGATE_", **given: Any) -> T:
    """Build ``cls`` from the variables present in ``env``; fields in ``given`` are set as is and
    fields marked ``metadata={"env": False}`` are never read."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = dict(given)
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given or not f.metadata.get("env", True):
            continue
        name = prefix + f.name.upper()
        raw = env.get(name)
        if raw is not None:
            values[f.name] = parse_value(name, raw, hints[f.name])
    return cls(**values)


def parse_value(name: str, raw: str, kind: Any) -> Any:
    """``raw`` as a ``kind`` (bool, int, float, tuple of ints or str); SettingsError names ``name``."""
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind == tuple[int, ...]:
            return tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
        return raw
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None
