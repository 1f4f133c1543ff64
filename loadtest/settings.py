"""The load test's settings, read once from ``LOADTEST_*`` environment variables.

Kept apart from the locustfile and the shape so that ``loadtest.run`` and the tests can read
them without importing Locust (importing ``locust`` monkey-patches the whole process with
gevent). Every field's variable is ``LOADTEST_`` + the field name in upper case.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

PREFIX = "LOADTEST_"


class LoadSettingsError(ValueError):
    """A ``LOADTEST_*`` variable holds a value its setting cannot take."""


@dataclass(frozen=True)
class LoadSettings:
    """Everything the load test can be told, with its default."""

    #: Target base URL (nginx); empty = the local stack at BATCHGATE_NGINX_PORT, started if none answers.
    host: str = ""
    #: X-API-Key sent with every request; empty = BATCHGATE_DEMO_API_KEY (or the key of the stack started).
    api_key: str = dataclasses.field(default="", repr=False)
    #: Concurrent users of each step, in order.
    steps: tuple[int, ...] = (10, 20, 40, 80, 160, 320, 640)
    #: Length of each step in seconds.
    step_s: float = 20.0
    #: Start of each step not measured (users ramping, queue settling); the rest is the step's row.
    warmup_s: float = 5.0
    #: Users started (or stopped) per second at a step change.
    spawn_rate: float = 50.0
    #: Share of tasks that repeat one of a few hot requests (cache hits once answered).
    repeat_share: float = 0.1
    #: Share of tasks with non-default generation settings or system text (batches must split).
    settings_share: float = 0.2
    #: Mean pause of a user between two tasks (uniform on 0 … 2 x this), seconds.
    think_s: float = 0.5
    #: Share of users that submit and wait in one call (``POST /api/v1/task?wait=30``); the rest poll.
    sync_share: float = 0.5
    #: A user gives a task up (an error) after this long without a final status, seconds.
    task_timeout_s: float = 120.0
    #: How often the shape reads ``GET /api/v1/metrics`` for the queue depth, seconds.
    metrics_interval_s: float = 1.0
    #: Where ``make loadtest`` writes ``<timestamp>/`` report folders.
    reports_dir: str = "loadtest/reports"
    #: Where the shape writes its step table (``steps.json``, ``steps.csv``); set by ``loadtest.run``.
    output_dir: str = "."

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LoadSettings:
        """Build settings from ``environ`` (default ``os.environ``), rejecting bad values."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is not None and raw.strip() != "":
                values[f.name] = _parse(PREFIX + f.name.upper(), raw.strip(), hints[f.name])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at start-up on values that cannot work."""
        if not self.steps or any(users < 1 for users in self.steps):
            raise LoadSettingsError("LOADTEST_STEPS must list at least one user count, each at least 1")
        if self.step_s <= 0 or not 0 <= self.warmup_s < self.step_s:
            raise LoadSettingsError("LOADTEST_STEP_S must be positive and LOADTEST_WARMUP_S in [0, step)")
        for name in ("repeat_share", "settings_share", "sync_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LoadSettingsError(f"{PREFIX}{name.upper()} must be between 0 and 1")
        if self.spawn_rate <= 0 or self.think_s < 0 or self.metrics_interval_s <= 0:
            raise LoadSettingsError("spawn rate and metrics interval must be positive, think time >= 0")

    @property
    def duration_s(self) -> float:
        """Planned length of the whole run."""
        return len(self.steps) * self.step_s

    def to_env(self) -> dict[str, str]:
        """These settings as ``LOADTEST_*`` variables (for the Locust process)."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            env[PREFIX + f.name.upper()] = (
                ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            )
        return env

    def public(self) -> dict[str, Any]:
        """The settings for a report: everything but the API key."""
        data = dataclasses.asdict(self)
        data["steps"] = list(self.steps)
        data["api_key"] = "(set)" if self.api_key else ""
        return data


def _parse(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind == tuple[int, ...]:
            return tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
        return raw
    except ValueError:
        raise LoadSettingsError(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None
