"""Structured answers: JSON Schema checks, and Gemini's own schema form read as JSON Schema.

Every schema batchgate carries is JSON Schema (draft 2020-12, as the openai SDK and Pydantic
write it); Gemini's OpenAPI-subset ``responseSchema`` (upper-case types, ``nullable``) is read
into it at the edge (``from_gemini_schema``). An answer is kept only if it parses as JSON and,
when its request has a schema, validates against it: a model that answers otherwise has not
answered.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema_rs

from batching.packed_prompt import json_between

#: Gemini Schema keys that JSON Schema spells the same way.
_SAME_KEYS = (
    "description",
    "title",
    "enum",
    "default",
    "example",
    "pattern",
    "minimum",
    "maximum",
)
#: Gemini Schema keys whose value is a count (Gemini sends int64 counts as strings).
_COUNT_KEYS = {
    "minItems": "minItems",
    "maxItems": "maxItems",
    "minLength": "minLength",
    "maxLength": "maxLength",
    "minProperties": "minProperties",
    "maxProperties": "maxProperties",
    "min_items": "minItems",
    "max_items": "maxItems",
    "min_length": "minLength",
    "max_length": "maxLength",
}


#: Marks the answer schema in a system instruction (``with_answer_format``).
ANSWER_SCHEMA_OPEN = "<answer_schema>"
ANSWER_SCHEMA_CLOSE = "</answer_schema>"
ANSWER_FORMAT_INSTRUCTION = (
    "When you answer in text instead of calling a function, answer only with JSON that is valid "
    "for the JSON Schema between <answer_schema> and </answer_schema>."
)


class SchemaError(ValueError):
    """A schema that is not a usable JSON Schema."""


def check_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a JSON Schema object batchgate can check answers against (raise
    ``SchemaError`` naming what is wrong)."""
    if not isinstance(schema, dict):
        raise SchemaError("a schema must be a JSON object")
    _validator(_canonical(schema))
    return schema


def invalid_answer(text: str, schema: dict[str, Any] | None) -> str | None:
    """Why ``text`` is not a JSON answer valid for ``schema`` (None when it is one)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "the answer is not valid JSON"
    return None if schema is None else invalid_value(value, schema)


def invalid_value(value: Any, schema: dict[str, Any]) -> str | None:
    """Why the decoded JSON ``value`` is not valid for ``schema`` (None when it is)."""
    error = next(iter(_validator(_canonical(schema)).iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.instance_path) or "the answer"
    return f"{where}: {error.message}"[:500]


def with_answer_format(system: str | None, schema: dict[str, Any]) -> str:
    """``system`` followed by the instruction to answer in JSON valid for ``schema``: for a call
    that offers functions, where Gemini 2.5 refuses JSON output (``responseMimeType``)."""
    listing = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    instruction = f"{ANSWER_FORMAT_INSTRUCTION}\n{ANSWER_SCHEMA_OPEN}\n{listing}\n{ANSWER_SCHEMA_CLOSE}"
    return f"{system}\n\n{instruction}" if system else instruction


def answer_format(system: str) -> dict[str, Any] | None:
    """The schema ``with_answer_format`` put in a system instruction, or None."""
    schema = json_between(system, f"\n{ANSWER_SCHEMA_OPEN}\n", f"\n{ANSWER_SCHEMA_CLOSE}")
    return schema if isinstance(schema, dict) else None


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=256)
def _validator(canonical: str) -> jsonschema_rs.Validator:
    """A compiled validator. Its ``pattern`` regexes run on a linear-time engine (Rust's
    ``regex``: no backtracking, so no pattern of a client's, like ``^(a+)+$``, can stall a
    worker on a long answer; lookaround and backreferences are refused), and nothing is
    fetched: a ``$ref`` outside the schema is refused."""
    try:
        return jsonschema_rs.validator_for(
            json.loads(canonical), pattern_options=jsonschema_rs.RegexOptions(), offline=True
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        raise SchemaError(str(exc).split("\n", 1)[0][:300]) from None


def from_gemini_schema(schema: Any) -> dict[str, Any]:
    """Gemini's OpenAPI-subset ``Schema`` (``{"type": "OBJECT", "nullable": true, ...}``) as JSON
    Schema; raise ``SchemaError`` for what is not a schema."""
    if not isinstance(schema, dict):
        raise SchemaError("a schema must be a JSON object")
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if kind is not None:
        if not isinstance(kind, str) or kind.upper() == "TYPE_UNSPECIFIED":
            raise SchemaError(f"type {kind!r} is not a Gemini schema type")
        out["type"] = kind.lower()
    for key in _SAME_KEYS:
        if key in schema:
            out[key] = schema[key]
    for key, target in _COUNT_KEYS.items():
        if key in schema:
            out[target] = _count(schema[key], key)
    if schema.get("format") not in (None, "enum"):
        out["format"] = schema["format"]
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            raise SchemaError("properties must be an object")
        out["properties"] = {name: from_gemini_schema(sub) for name, sub in properties.items()}
    if "required" in schema:
        out["required"] = list(schema["required"])
    if "items" in schema:
        out["items"] = from_gemini_schema(schema["items"])
    options = schema.get("anyOf", schema.get("any_of"))
    if options is not None:
        if not isinstance(options, list):
            raise SchemaError("anyOf must be a list")
        out["anyOf"] = [from_gemini_schema(option) for option in options]
    if schema.get("nullable") is True:
        return (
            {"anyOf": [out, {"type": "null"}]}
            if "type" not in out
            else {**out, "type": [out["type"], "null"]}
        )
    return out


def _count(value: Any, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SchemaError(f"{key} must be a whole number") from None
