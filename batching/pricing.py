"""What a model call's tokens cost: Gemini's prices per model, in USD per million tokens.

Gemini bills input, output and cached input tokens apart; ``promptTokenCount`` already
includes ``cachedContentTokenCount``, so the cached tokens are taken out of the input
before each part is priced (counting them twice is the classic error of spend trackers).
The Batch API bills half of every part. Prompts above 200,000 tokens cost more on some
models; batchgate's calls stay far below that, so that tier is not modelled.

The defaults were transcribed on 2026-12-04 from Gemini's pricing page
(https://ai.google.dev/gemini-api/docs/pricing, standard tier, text, prompts up to 200k
tokens) as published copies of it read that day; check them against the page and override
them with ``BATCHGATE_PRICES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: When the default prices were taken (see the module docstring).
PRICES_TAKEN_ON = "2026-12-04"
#: The Batch API's price as a share of the standard price.
BATCH_DISCOUNT = 0.5
_PARTS = ("input", "output", "cached")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million input, output and cached input tokens."""

    input: float
    output: float
    cached: float

    def __post_init__(self) -> None:
        if min(self.input, self.output, self.cached) < 0:
            raise ValueError("prices must be >= 0")


DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gemini-2.5-pro": ModelPrice(input=1.25, output=10.00, cached=0.125),
    "gemini-2.5-flash": ModelPrice(input=0.30, output=2.50, cached=0.03),
    "gemini-2.5-flash-lite": ModelPrice(input=0.10, output=0.40, cached=0.01),
    "gemini-2.0-flash": ModelPrice(input=0.10, output=0.40, cached=0.025),
}


@dataclass(frozen=True)
class Usage:
    """Tokens a request used; ``input_tokens`` includes ``cached_input_tokens`` (as Gemini counts)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(frozen=True)
class PriceTable:
    """Prices by model; a model not listed costs ``fallback`` (None: nothing is known, 0)."""

    prices: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    fallback: ModelPrice | None = None

    def of(self, model: str) -> ModelPrice | None:
        # Gemini's versioned names (``gemini-2.5-flash-001``, ``models/...``) cost as their model.
        name = model.removeprefix("models/")
        while name:
            if name in self.prices:
                return self.prices[name]
            name, _, _ = name.rpartition("-")
        return self.fallback

    def cost_usd(self, model: str, usage: Usage, batch: bool = False) -> float:
        """What ``usage`` of ``model`` costs, at the Batch API's discount when ``batch``."""
        price = self.of(model)
        if price is None:
            return 0.0
        cached = min(max(usage.cached_input_tokens, 0), max(usage.input_tokens, 0))
        fresh = max(usage.input_tokens, 0) - cached
        cost = (
            fresh * price.input + cached * price.cached + max(usage.output_tokens, 0) * price.output
        ) / 1e6
        return cost * BATCH_DISCOUNT if batch else cost

    @classmethod
    def parse(cls, text: str) -> PriceTable:
        """The defaults with overrides written ``model:input=0.3,output=2.5,cached=0.03;...``
        (a part left out keeps the model's default, or 0 for a new model); ``*`` names the
        price of every model not listed."""
        prices, fallback = dict(DEFAULT_PRICES), None
        for entry in filter(None, (part.strip() for part in text.split(";"))):
            model, sep, parts = entry.partition(":")
            model = model.strip()
            if not sep or not model:
                raise ValueError(f"{entry!r} is not model:input=USD,output=USD,cached=USD")
            values: dict[str, float] = {}
            for part in filter(None, (p.strip() for p in parts.split(","))):
                kind, eq, number = part.partition("=")
                try:
                    if kind.strip() not in _PARTS or not eq:
                        raise ValueError
                    values[kind.strip()] = float(number)
                except ValueError:
                    raise ValueError(
                        f"{part!r} in {entry!r} is not input=USD, output=USD or cached=USD"
                    ) from None
            base = prices.get(model, ModelPrice(0.0, 0.0, 0.0))
            price = ModelPrice(**{kind: values.get(kind, getattr(base, kind)) for kind in _PARTS})
            if model == "*":
                fallback = price
            else:
                prices[model] = price
        return cls(prices, fallback)


#: The default prices, as one table (no overrides).
DEFAULT_PRICE_TABLE = PriceTable()
