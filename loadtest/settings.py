"""The load test's options: one table, registered on Locust's own parser and on ``loadtest.run``'s.

Every field of ``LoadSettings`` is an option ``--<name>`` (``--step-spawn-rate`` for
``spawn_rate``, which Locust's own ``--spawn-rate`` would shadow) and an environment variable
``LOADTEST_<FIELD>``, read by ConfigArgParse, the parser Locust itself uses: so
``locust -f loadtest/locustfile.py --think-s 1`` and ``LOADTEST_THINK_S=1`` mean the same,
a command-line option wins over its variable, an empty variable means the default, and
``--help`` lists them all. The values are parsed once, by that parser; ``LoadSettings`` is
the typed view built from what it parsed.

Kept apart from the locustfile and the shape so that ``loadtest.run`` and the tests can read
the options without importing Locust (importing ``locust`` monkey-patches the whole process
with gevent). Imports nothing of batchgate: the locustfile runs on Locust's own image too.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NoReturn, get_type_hints

import configargparse

PREFIX = "LOADTEST_"


class LoadSettingsError(ValueError):
    """An option (or its ``LOADTEST_*`` variable) holds a value its setting cannot take."""


def _option(default: Any, help: str, *, locust: bool = True, flag: str = "", secret: bool = False) -> Any:
    """A field that is also an option; ``locust``: registered on Locust's parser by the locustfile
    (else only ``loadtest.run`` reads it); ``secret``: never on a command line or in a report."""
    metadata = {"help": help, "locust": locust, "flag": flag, "secret": secret}
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class LoadSettings:
    """Everything the load test can be told, with its default."""

    host: str = _option(
        "",
        "Target base URL (nginx); empty = the local stack at BATCHGATE_NGINX_PORT, started if none "
        "answers. Locust's own --host in the locustfile.",
        locust=False,
    )
    api_key: str = _option(
        "",
        "X-API-Key sent with every request; empty = BATCHGATE_DEMO_API_KEY (or the key of the stack started).",
        secret=True,
    )
    steps: tuple[int, ...] = _option(
        (10, 20, 40, 80, 160, 320, 640), "Concurrent users of each step, in order, comma-separated."
    )
    step_s: float = _option(20.0, "Length of each step in seconds.")
    warmup_s: float = _option(
        5.0, "Start of each step not measured (users ramping, queue settling); the rest is the step's row."
    )
    spawn_rate: float = _option(
        50.0, "Users started (or stopped) per second at a step change.", flag="step-spawn-rate"
    )
    repeat_share: float = _option(
        0.1, "Share of tasks that repeat one of a few hot requests (cache hits once answered)."
    )
    settings_share: float = _option(
        0.2, "Share of tasks with non-default generation settings or system text (batches must split)."
    )
    think_s: float = _option(
        0.5, "Mean pause of a user between two tasks (uniform on 0 … 2 x this), seconds."
    )
    sync_share: float = _option(
        0.5, "Share of users that submit and wait in one call (POST /api/v1/task?wait=30); the rest poll."
    )
    task_timeout_s: float = _option(
        120.0, "A user gives a task up (an error) after this long without a final status, seconds."
    )
    metrics_interval_s: float = _option(
        1.0, "How often the shape reads GET /api/v1/metrics for the queue depth, seconds."
    )
    ca_bundle: str = _option(
        "",
        "CA bundle the shape verifies the target's certificate with (compose: its self-signed "
        "certs/fullchain.pem); empty = the system's.",
    )
    reports_dir: str = _option(
        "loadtest/reports", "Where make loadtest writes <timestamp>/ report folders.", locust=False
    )
    output_dir: str = _option(
        ".", "Where the shape writes its step table (steps.json, steps.csv); set by loadtest.run."
    )

    @classmethod
    def from_args(
        cls, argv: Sequence[str], environ: Mapping[str, str] | None = None, prog: str | None = None
    ) -> LoadSettings:
        """Parse ``argv`` over ``environ`` (default ``os.environ``) with every option, as
        ``loadtest.run`` does; LoadSettingsError for a bad or unknown option."""
        parser = option_parser(prog)
        options = parser.parse_args(list(argv), env_vars=os.environ if environ is None else environ)
        return cls.from_options(options)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LoadSettings:
        """Build settings from ``LOADTEST_*`` in ``environ`` (default ``os.environ``) alone."""
        return cls.from_args([], environ)

    @classmethod
    def from_options(cls, options: argparse.Namespace | None) -> LoadSettings:
        """The typed view of what a parser parsed (Locust's ``environment.parsed_options``, or
        ``option_parser()``'s); options it does not hold keep their default."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = getattr(options, _dest(f), None) if options is not None else None
            if value is not None:
                values[f.name] = tuple(value) if isinstance(f.default, tuple) else value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at start-up on values that cannot work."""
        if not self.steps or any(users < 1 for users in self.steps):
            raise LoadSettingsError(f"{_named('steps')} must list at least one user count, each at least 1")
        if self.step_s <= 0 or not 0 <= self.warmup_s < self.step_s:
            raise LoadSettingsError(
                f"{_named('step_s')} must be positive and {_named('warmup_s')} in [0, step)"
            )
        for name in ("repeat_share", "settings_share", "sync_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LoadSettingsError(f"{_named(name)} must be between 0 and 1")
        if self.spawn_rate <= 0 or self.think_s < 0 or self.metrics_interval_s <= 0:
            raise LoadSettingsError("spawn rate and metrics interval must be positive, think time >= 0")

    @property
    def duration_s(self) -> float:
        """Planned length of the whole run."""
        return len(self.steps) * self.step_s

    def to_env(self) -> dict[str, str]:
        """These settings as ``LOADTEST_*`` variables."""
        return {PREFIX + f.name.upper(): _text(getattr(self, f.name)) for f in fields(self)}

    def locust_argv(self) -> list[str]:
        """The locustfile's options as Locust command-line options, secrets left out (pass
        those in the environment: a command line is visible to every user of the machine)."""
        argv = []
        for f in fields(self):
            if f.metadata["locust"] and not f.metadata["secret"]:
                argv += [_flag(f), _text(getattr(self, f.name))]
        return argv

    def public(self) -> dict[str, Any]:
        """The settings for a report: everything but the API key."""
        data = dataclasses.asdict(self)
        data["steps"] = list(self.steps)
        data["api_key"] = "(set)" if self.api_key else ""
        return data


def add_locust_options(parser: Any) -> None:
    """Register the locustfile's options on Locust's parser (``init_command_line_parser``)."""
    for f in fields(LoadSettings):
        if f.metadata["locust"]:
            parser.add_argument(_flag(f), is_secret=f.metadata["secret"], **_argument(f))


class _Parser(configargparse.ArgumentParser):
    """Raises LoadSettingsError instead of exiting, so the caller reports a bad option."""

    def error(self, message: str) -> NoReturn:
        raise LoadSettingsError(message)


def option_parser(prog: str | None = None) -> configargparse.ArgumentParser:
    """Every option, ``loadtest.run``'s own (``--host``, ``--reports-dir``) included."""
    parser = _Parser(
        prog=prog,
        description="stepped load test of batchgate: every option is also a LOADTEST_* variable",
    )
    for f in fields(LoadSettings):
        parser.add_argument(_flag(f), **_argument(f))
    return parser


def _named(name: str) -> str:
    """How a message names the option of field ``name``: its flag and its variable."""
    (f,) = (f for f in fields(LoadSettings) if f.name == name)
    return f"{_flag(f)} ({PREFIX}{name.upper()})"


def _flag(f: dataclasses.Field[Any]) -> str:
    return "--" + (f.metadata["flag"] or f.name.replace("_", "-"))


def _dest(f: dataclasses.Field[Any]) -> str:
    return _flag(f)[2:].replace("-", "_")


def _argument(f: dataclasses.Field[Any]) -> dict[str, Any]:
    """``add_argument``'s keywords for the option of field ``f``."""
    env_var = PREFIX + f.name.upper()
    kind = get_type_hints(LoadSettings)[f.name]
    # A list, not a tuple: Locust's web UI edits a list option as comma-separated values.
    default = list(f.default) if isinstance(f.default, tuple) else f.default
    shown = _text(f.default) if f.default != "" else "empty"
    return {
        "dest": _dest(f),
        "type": _Convert(kind, default, f"{_flag(f)} / {env_var}"),
        "default": default,
        "env_var": env_var,
        "help": f"{f.metadata['help'].rstrip('.')} (default: {shown})",
    }


@dataclass(frozen=True, eq=False)  # hashed by identity: argparse looks types up in a registry
class _Convert:
    """An option's ``type``: its text as the field's kind; empty text is the default."""

    kind: Any
    default: Any
    name: str

    def __call__(self, raw: str) -> Any:
        text = raw.strip()
        if not text:
            return self.default
        try:
            if self.kind == tuple[int, ...]:
                return [int(part) for part in text.replace(" ", "").split(",") if part]
            return self.kind(text)
        except ValueError:
            kind = "comma-separated list of integers" if self.kind == tuple[int, ...] else self.kind.__name__
            raise argparse.ArgumentTypeError(f"{raw!r} is not a valid {kind} ({self.name})") from None


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
