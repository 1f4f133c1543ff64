"""Deterministic answers, so every test can recompute what each client must receive.

An answer contains its prompt verbatim (a client that got a neighbour's answer is caught by
a substring check) plus 8 to 32 filler words picked from the prompt's SHA-256, so output
token counts vary from prompt to prompt but never from run to run.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

FILLER_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "amber", "basalt", "cobalt", "dune", "ember", "fjord",
)  # fmt: skip
MIN_FILLER_WORDS = 8
MAX_FILLER_WORDS = 32


def answer_for(prompt: str) -> str:
    """Return the simulator's answer to ``prompt``: the prompt quoted, then filler words."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    count = MIN_FILLER_WORDS + digest[0] % (MAX_FILLER_WORDS - MIN_FILLER_WORDS + 1)
    picks = digest[1:] + hashlib.sha256(digest).digest()  # one byte per word, up to 63
    words = [FILLER_WORDS[picks[i] % len(FILLER_WORDS)] for i in range(count)]
    return f"Simulated answer to «{prompt}»: " + " ".join(words) + "."


def packed_answer_text(answers: list[tuple[Any, str]]) -> str:
    """Render ``(item id, answer)`` pairs as the JSON a packed call must return."""
    body = {"answers": [{"id": item_id, "answer": answer} for item_id, answer in answers]}
    return json.dumps(body, ensure_ascii=False)


def value_for_schema(schema: Any, prompt: str) -> Any:
    """Build a JSON value that conforms to ``schema`` and whose strings carry the answer.

    Accepts both Gemini's OpenAPI subset (``responseSchema``, upper-case types) and JSON
    Schema (``responseJsonSchema``); constructs it does not know fall back to a string.
    """
    if not isinstance(schema, dict):
        return answer_for(prompt)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "any_of", "oneOf", "one_of"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return value_for_schema(options[0], prompt)
    kind = _schema_type(schema)
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: value_for_schema(sub, prompt) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, _as_int(schema.get("minItems", schema.get("min_items")), 1))
        return [value_for_schema(schema.get("items"), prompt) for _ in range(count)]
    if kind in ("integer", "number"):
        low = _as_number(schema.get("minimum"))
        high = _as_number(schema.get("maximum"))
        value = float(len(prompt))
        if high is not None:
            value = min(value, high)
        if low is not None:
            value = max(value, low)
        return math.ceil(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return answer_for(prompt)


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON Schema ["string", "null"]
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str) and kind:
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _as_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)  # Gemini's schema sends minimum/maximum as numbers or strings
    except ValueError:
        return None
