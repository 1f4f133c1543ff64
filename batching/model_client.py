"""The one interface through which batchgate reaches a model."""

from __future__ import annotations

from typing import Protocol

from batching.types import ModelCall, ModelReply


class ModelClient(Protocol):
    """Sends one call; raises ``ModelCallError`` on failure."""

    async def generate(self, call: ModelCall) -> ModelReply: ...

    async def aclose(self) -> None: ...
