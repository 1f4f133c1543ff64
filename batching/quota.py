"""A project's Gemini quotas per model, and what a call counts against them.

Gemini limits each model of a project by requests per minute (RPM), input tokens per minute
(TPM) and requests per day (RPD). The operator states the default model's quotas and may
override them per model (``BATCHGATE_MODEL_QUOTAS``); a model not listed gets quotas of the
default's size, counted apart, as Gemini counts every model apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from batching.tokens import estimate_tokens
from batching.types import ModelCall

_KINDS = ("rpm", "tpm", "rpd")


@dataclass(frozen=True)
class ModelQuota:
    """One model's quotas for the whole project (0: that quota is not enforced here)."""

    rpm: int = 0
    tpm: int = 0
    rpd: int = 0

    def __post_init__(self) -> None:
        if min(self.rpm, self.tpm, self.rpd) < 0:
            raise ValueError("quotas must be >= 0")

    @property
    def any(self) -> bool:
        return bool(self.rpm or self.tpm or self.rpd)


@dataclass(frozen=True)
class QuotaTable:
    """The quotas of every model: ``overrides`` by model name, ``default`` for the rest."""

    default: ModelQuota = ModelQuota()
    overrides: Mapping[str, ModelQuota] = field(default_factory=dict)

    def of(self, model: str) -> ModelQuota:
        return self.overrides.get(model, self.default)

    @property
    def any(self) -> bool:
        return self.default.any or any(quota.any for quota in self.overrides.values())

    @classmethod
    def parse(cls, default: ModelQuota, text: str) -> QuotaTable:
        """Read overrides written ``model:rpm=150,tpm=2000000,rpd=1000;other:rpm=4000``; a
        quota a model's entry leaves out is the default's."""
        overrides: dict[str, ModelQuota] = {}
        for entry in filter(None, (part.strip() for part in text.split(";"))):
            model, sep, limits = entry.partition(":")
            if not sep or not model.strip():
                raise ValueError(f"{entry!r} is not model:rpm=N,tpm=N,rpd=N")
            values: dict[str, int] = {}
            for limit in filter(None, (part.strip() for part in limits.split(","))):
                kind, eq, number = limit.partition("=")
                if kind.strip() not in _KINDS or not eq or not number.strip().isdigit():
                    raise ValueError(f"{limit!r} in {entry!r} is not rpm=N, tpm=N or rpd=N")
                values[kind.strip()] = int(number)
            overrides[model.strip()] = replace(default, **values)
        return cls(default, overrides)


def call_input_tokens(call: ModelCall) -> int:
    """Estimated input tokens of a call, as counted against TPM before it leaves (Gemini's
    ``usageMetadata.promptTokenCount`` corrects it after)."""
    texts = [call.system or "", *call.parts]
    for _role, parts in call.history:
        texts.extend(str(part.get("text", "")) for part in parts)
    for schema in (call.response_schema, call.response_json_schema):
        if schema is not None:
            texts.append(json.dumps(schema, separators=(",", ":")))
    return sum(estimate_tokens(text) for text in texts)
