"""The request mix of the load test, built from the shipped corpus (``corpus_prompts``):
shared system text and settings, a few hot requests repeated verbatim, and variants whose
settings split batches."""

from __future__ import annotations

import random
from typing import Any

from loadtest.corpus_prompts import CORPUS, CorpusItem

#: The system text and generation settings most requests share, so they can share a batch.
SYSTEM = (
    "You are one step of an automated agent pipeline. Answer precisely and briefly; "
    "when asked for JSON, return only JSON."
)
BASE_GENERATION: dict[str, Any] = {"temperature": 0.2}
#: Other settings a request may carry; each is its own group, so a batch holding them splits.
VARIANTS: tuple[dict[str, Any], ...] = (
    {"generation": {"temperature": 0.0, "max_output_tokens": 128}},
    {"generation": {"temperature": 0.9, "top_p": 0.95}},
    {"generation": {"temperature": 0.2, "max_output_tokens": 512, "seed": 7}},
    {"system": "You are a meticulous senior reviewer. Be specific and cite what you rely on."},
)
#: The few requests repeated verbatim (cache hits once the first one has been answered).
HOT_ITEMS: tuple[CorpusItem, ...] = CORPUS[::5]


def build_request(
    rng: random.Random, repeat_share: float, settings_share: float, ref: str
) -> tuple[str, dict[str, Any]]:
    """One request body and its kind: ``repeat`` (a hot request, verbatim), ``variant``
    (non-default settings) or ``unique``; ``ref`` goes into the context of non-repeats so that
    they are distinct requests, never cache hits."""
    if rng.random() < repeat_share:
        body = rng.choice(HOT_ITEMS).body()
        body.update(system=SYSTEM, generation=dict(BASE_GENERATION))
        return "repeat", body
    body = rng.choice(CORPUS).body()
    body["context"] = {**body.get("context", {}), "request_ref": ref}
    body.update(system=SYSTEM, generation=dict(BASE_GENERATION))
    if rng.random() < settings_share:
        body.update(rng.choice(VARIANTS))
        return "variant", body
    return "unique", body
