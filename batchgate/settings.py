"""The one settings object, read once from ``BATCHGATE_*`` environment variables.

``Settings`` is a set of small frozen sections (``batchgate.settings_sections``); each consumer
takes only the section it needs (the engine ``packing``, the admission ``edge``, drift
detection ``drift`` …). Every field's environment variable is ``BATCHGATE_`` + the field name
in upper case (``SimulatorSettings``: ``BATCHGATE_SIM_`` + name). Entry points call
``Settings.from_env()`` once and pass the object down; tests build one from an explicit mapping
with ``Settings.from_env({...})`` and never touch ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from batchgate.env import SettingsError, load_section
from batchgate.settings_gemini import DEFAULT_SIMULATOR_URL, GeminiSettings
from batchgate.settings_sections import (
    ApiSettings,
    BrokerSettings,
    ConsumerSettings,
    ConversationSettings,
    DriftSettings,
    EdgeSettings,
    PackingSettings,
    StackSettings,
)
from batching.simulator.settings import SimulatorSettings

__all__ = [
    "DEFAULT_SIMULATOR_URL",
    "SECTIONS",
    "ApiSettings",
    "BrokerSettings",
    "ConsumerSettings",
    "ConversationSettings",
    "DriftSettings",
    "EdgeSettings",
    "GeminiSettings",
    "PackingSettings",
    "Settings",
    "SettingsError",
    "SimulatorSettings",
    "StackSettings",
]


@dataclass(frozen=True)
class Settings:
    """Everything batchgate can be told, by section, with its default."""

    broker: BrokerSettings = field(default_factory=BrokerSettings)
    gemini: GeminiSettings = field(default_factory=GeminiSettings)
    packing: PackingSettings = field(default_factory=PackingSettings)
    consumer: ConsumerSettings = field(default_factory=ConsumerSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    conversations: ConversationSettings = field(default_factory=ConversationSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    stack: StackSettings = field(default_factory=StackSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), rejecting bad values."""
        env = os.environ if environ is None else environ
        try:
            simulator = SimulatorSettings.from_env(env)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        # DATABASE_URL (the usual name) serves when BATCHGATE_DATABASE_URL is unset or empty.
        fallback = {} if env.get("BATCHGATE_DATABASE_URL") else {"database_url": env.get("DATABASE_URL", "")}
        conversations = load_section(ConversationSettings, env, **fallback)
        gemini = load_section(
            GeminiSettings,
            env,
            gemini_api_key=env.get("GEMINI_API_KEY", ""),
            embedded_simulator_url=_embedded_simulator_url(simulator),
        )
        read: dict[str, object] = {name: load_section(kind, env) for name, kind in SECTIONS.items()}
        read.update(gemini=gemini, conversations=conversations)
        settings = cls(**read, simulator=simulator)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at start-up on values, and combinations of sections, that cannot work."""
        for section in (
            self.broker,
            self.gemini,
            self.packing,
            self.consumer,
            self.api,
            self.edge,
            self.drift,
            self.stack,
        ):
            section.validate()
        if self.broker.visibility_timeout_s < self.longest_batch_s:
            raise SettingsError(
                f"BATCHGATE_VISIBILITY_TIMEOUT_S ({self.broker.visibility_timeout_s}) is shorter than the "
                f"longest batch ({self.longest_batch_s:.0f} s): a slow batch would be delivered twice"
            )

    @property
    def longest_batch_s(self) -> float:
        """The longest a batch may legitimately hold its messages: the flush window, every
        attempt of a call timing out with the longest backoff between, and a conversation
        turn waiting for its predecessor."""
        attempts = self.packing.retry_attempts
        calls = attempts * self.gemini.gemini_timeout_s + (attempts - 1) * self.packing.retry_max_s
        return self.consumer.batch_window_ms / 1000 + calls + self.conversations.session_order_wait_s


def _embedded_simulator_url(simulator: SimulatorSettings) -> str:
    """Where the embedded simulator (``BATCHGATE_SIM_HOST``/``_PORT``) answers."""
    host = simulator.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{simulator.port}"


#: Each section's attribute on ``Settings`` and its class, in the documentation's order.
SECTIONS: dict[str, type] = {
    "broker": BrokerSettings,
    "gemini": GeminiSettings,
    "packing": PackingSettings,
    "consumer": ConsumerSettings,
    "api": ApiSettings,
    "edge": EdgeSettings,
    "conversations": ConversationSettings,
    "drift": DriftSettings,
    "stack": StackSettings,
}
