"""Deterministic answers, so every test can recompute what each client must receive.

An answer contains its prompt verbatim (a client that got a neighbour's answer is caught by
a substring check) plus 8 to 32 filler words picked from the prompt's SHA-256, so output
token counts vary from prompt to prompt but never from run to run. A structured answer, or a
function call's arguments, is a value built for the asked schema whose strings are that answer.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from typing import Any

FILLER_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "amber", "basalt", "cobalt", "dune", "ember", "fjord",
)  # fmt: skip
MIN_FILLER_WORDS = 8
MAX_FILLER_WORDS = 32
#: Nesting past which optional parts are left out (arrays get ``minItems`` elements, objects
#: their required properties, ``anyOf`` its null branch), so a recursive schema ends.
OPTIONAL_DEPTH = 6
#: Nesting past which a schema is given up on (a recursion nothing optional ends): null.
MAX_DEPTH = 48
#: Values for string formats a client parses (Pydantic's datetime, date, UUID and so on).
FORMAT_VALUES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "PT1S",
    "email": "simulated@example.com",
    "uri": "https://example.com/simulated",
    "url": "https://example.com/simulated",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def answer_for(prompt: str) -> str:
    """Return the simulator's answer to ``prompt``: the prompt quoted, then filler words."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    count = MIN_FILLER_WORDS + digest[0] % (MAX_FILLER_WORDS - MIN_FILLER_WORDS + 1)
    picks = digest[1:] + hashlib.sha256(digest).digest()  # one byte per word, up to 63
    words = [FILLER_WORDS[picks[i] % len(FILLER_WORDS)] for i in range(count)]
    return f"Simulated answer to «{prompt}»: " + " ".join(words) + "."


def packed_answer_text(entries: list[dict[str, Any]]) -> str:
    """Render a packed call's entries (``{"id", "answer"}`` or ``{"id", "function_calls"}``) as
    the JSON the call must return."""
    return json.dumps({"answers": entries}, ensure_ascii=False)


def tool_results_text(responses: list[tuple[str, Any]]) -> str:
    """The suffix that quotes, verbatim and in order, the ``(name, response)`` function
    responses a conversation gave, so a test can see the tool's result reached the model."""
    results = (
        f"{name} -> {json.dumps(response, ensure_ascii=False, sort_keys=True)}"
        for name, response in responses
    )
    return " Tool results: " + "; ".join(results)


def broken_json_for(prompt: str) -> str:
    """Text that starts like a JSON answer to ``prompt`` and is cut inside a string: not JSON."""
    return '{"answer": ' + json.dumps(prompt, ensure_ascii=False)[:-1]


def function_call_for(name: str, parameters: Any, prompt: str) -> dict[str, Any]:
    """The ``functionCall`` the simulator makes: ``name`` with arguments valid for ``parameters``
    (JSON Schema or Gemini's OpenAPI subset; None: no arguments) whose strings carry the prompt."""
    args = value_for_schema(parameters, prompt) if isinstance(parameters, dict) else {}
    return {"name": name, "args": args if isinstance(args, dict) else {}}


def value_for_schema(schema: Any, prompt: str, root: Any = None) -> Any:
    """Build a JSON value that conforms to ``schema`` and whose strings carry the answer.

    Accepts Gemini's OpenAPI subset (``responseSchema``: upper-case types, ``nullable``,
    ``propertyOrdering``) and JSON Schema as Pydantic and strict-mode clients write it
    (``$ref`` into ``$defs``, ``anyOf`` with null, ``const``, ``prefixItems``); ``$ref`` is
    resolved against ``root`` (default: ``schema`` itself). Constructs it does not know fall
    back to a string.
    """
    return _Builder(prompt, schema if root is None else root).value(schema, 0)


def resolve(schema: Any, root: Any) -> Any:
    """``schema`` with its ``$ref`` (into ``root``: ``#/$defs/Name``, ``#/definitions/Name``, any
    JSON pointer) and ``allOf`` merged in; a reference that leads nowhere becomes ``{}``."""
    for _ in range(MAX_DEPTH):  # a chain of references, or a loop of them
        if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
            break
        target = _pointer(root, schema["$ref"])
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings} if isinstance(target, dict) else siblings
    if isinstance(schema, dict):
        parts = schema.get("allOf", schema.get("all_of"))
        if isinstance(parts, list) and parts:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k not in ("allOf", "all_of")}
            for part in parts:
                _merge(merged, resolve(part, root))
            return merged
    return schema


def schema_kind(schema: Any) -> str:
    """The lower-case type a (resolved) schema asks for: ``object``, ``string``, ``null``..."""
    return _schema_type(schema) if isinstance(schema, dict) else "string"


class _Builder:
    """Walks one schema for one prompt."""

    def __init__(self, prompt: str, root: Any) -> None:
        self.prompt = prompt
        self.root = root

    def value(self, schema: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:  # only a recursion nothing optional ends: no value is valid
            return None
        schema = resolve(schema, self.root)
        if not isinstance(schema, dict):
            return answer_for(self.prompt)
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        for key in ("anyOf", "any_of", "oneOf", "one_of"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.value(self._option(options, depth), depth + 1)
        deep = depth > OPTIONAL_DEPTH
        kind = _schema_type(schema)
        if kind == "object":
            return self._object(schema, depth, deep)
        if kind == "array":
            return self._array(schema, depth, deep)
        if kind in ("integer", "number"):
            return _number(schema, kind, float(len(self.prompt)))
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema)

    def _option(self, options: list[Any], depth: int) -> Any:
        """A non-null branch (the null one past ``OPTIONAL_DEPTH``, to end a recursion)."""
        nulls = [o for o in options if schema_kind(resolve(o, self.root)) == "null"]
        others = [o for o in options if o not in nulls]
        if depth > OPTIONAL_DEPTH and nulls:
            return nulls[0]
        return (others or nulls)[0]

    def _object(self, schema: dict[str, Any], depth: int, deep: bool) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        ordering = schema.get("propertyOrdering", schema.get("property_ordering"))
        names = [n for n in ordering if n in properties] if isinstance(ordering, list) else []
        names += [n for n in properties if n not in names]
        if deep:
            required = schema.get("required")
            names = [n for n in names if isinstance(required, list) and n in required]
        return {name: self.value(properties[name], depth + 1) for name in names}

    def _array(self, schema: dict[str, Any], depth: int, deep: bool) -> list[Any]:
        prefix = schema.get("prefixItems", schema.get("prefix_items"))
        prefix = prefix if isinstance(prefix, list) else []
        low = _as_int(schema.get("minItems", schema.get("min_items")), 0)
        high = _as_int(schema.get("maxItems", schema.get("max_items")), -1)
        count = max(low, len(prefix) if prefix else (0 if deep else 1))
        if high >= 0:
            count = min(count, high)
        items = schema.get("items")
        return [self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)]

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            text = str(uuid.UUID(bytes=hashlib.sha256(self.prompt.encode("utf-8")).digest()[:16], version=4))
        elif isinstance(fmt, str) and fmt in FORMAT_VALUES:
            text = FORMAT_VALUES[fmt]
        else:
            text = answer_for(self.prompt)
        longest = _as_int(schema.get("maxLength", schema.get("max_length")), -1)
        shortest = _as_int(schema.get("minLength", schema.get("min_length")), 0)
        if longest >= 0:
            text = text[:longest]
        return text + "." * max(0, shortest - len(text))


def _pointer(root: Any, ref: str) -> Any:
    """The part of ``root`` a local JSON pointer (``#/$defs/Name``) names, or None."""
    if not ref.startswith("#"):
        return None
    node = root
    for token in ref[1:].split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _merge(into: dict[str, Any], part: Any) -> None:
    """Merge an ``allOf`` branch: properties and required lists join, other keys add."""
    if not isinstance(part, dict):
        return
    for key, value in part.items():
        if key == "properties" and isinstance(value, dict):
            into["properties"] = {**value, **into.get("properties", {})}
        elif key == "required" and isinstance(value, list):
            into["required"] = list(dict.fromkeys([*into.get("required", []), *value]))
        else:
            into.setdefault(key, value)


def _number(schema: dict[str, Any], kind: str, value: float) -> int | float:
    """``value`` within the schema's bounds (an integer when asked: bounds rounded inwards)."""
    low = _as_number(schema.get("minimum"))
    high = _as_number(schema.get("maximum"))
    above = _as_number(schema.get("exclusiveMinimum", schema.get("exclusive_minimum")))
    below = _as_number(schema.get("exclusiveMaximum", schema.get("exclusive_maximum")))
    step = 1.0 if kind == "integer" else 0.5
    if above is not None:
        low = max(low, above + step) if low is not None else above + step
    if below is not None:
        high = min(high, below - step) if high is not None else below - step
    if kind == "integer":
        low = None if low is None else math.ceil(low)
        high = None if high is None else math.floor(high)
    if high is not None:
        value = min(value, high)
    if low is not None:
        value = max(value, low)
    if kind != "integer":
        return value
    whole = math.ceil(value)
    multiple = _as_int(schema.get("multipleOf", schema.get("multiple_of")), 0)
    if multiple > 0:
        whole = math.ceil(whole / multiple) * multiple
    return whole


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON Schema ["string", "null"]
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str) and kind:
        return kind.lower()
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _as_int(value: Any, default: int) -> int:
    """An integer field; Gemini's schema sends int64 fields (``minItems``) as strings too."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return default


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)  # Gemini's schema sends minimum/maximum as numbers or strings
    except ValueError:
        return None
