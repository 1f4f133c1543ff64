"""The one interface through which batchgate reaches a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from batching.types import ModelCall, ModelReply


class ModelClient(Protocol):
    """Sends one call; raises ``ModelCallError`` on failure."""

    async def generate(self, call: ModelCall) -> ModelReply: ...

    async def generate_stream(self, call: ModelCall, on_text: Callable[[str], None]) -> ModelReply:
        """Like ``generate``, calling ``on_text`` with each chunk of text as it arrives."""
        ...

    async def aclose(self) -> None: ...
