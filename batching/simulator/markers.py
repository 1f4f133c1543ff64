"""The marker texts that make the simulator misbehave on purpose (``SimulatorSettings``' ``*_marker``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batching.simulator.protocol import GenerateRequest
    from batching.simulator.settings import SimulatorSettings


def marked(prompt: str, marker: str) -> bool:
    """True when ``marker`` is set and in ``prompt`` (an empty marker is turned off)."""
    return bool(marker) and marker in prompt


def poisoned(prompt: str, config: SimulatorSettings) -> bool:
    """True for a prompt that always fails (``poison_marker``)."""
    return marked(prompt, config.poison_marker)


def blocked(request: GenerateRequest, items: list[dict[str, Any]] | None, config: SimulatorSettings) -> bool:
    """True when ``block_marker`` is anywhere in the request's text, a packed item's decoded
    prompt and context included (the item list escapes some characters)."""
    marker = config.block_marker
    if not marker:
        return False
    texts = [*request.texts, *(text for item in items or [] for text in strings(item))]
    return any(marker in text for text in texts)


def strings(value: Any) -> list[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []
