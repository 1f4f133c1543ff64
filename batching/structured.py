"""Structured answers: JSON Schema checks, and Gemini's own schema form read as JSON Schema.

Every schema batchgate carries is JSON Schema (draft 2020-12, as the openai SDK and Pydantic
write it); Gemini's OpenAPI-subset ``responseSchema`` (upper-case types, ``nullable``) is read
into it at the edge (``from_gemini_schema``). An answer is kept only if it parses as JSON and,
when its request has a schema, validates against it: a model that answers otherwise has not
answered.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import exceptions, validators

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


class SchemaError(ValueError):
    """A schema that is not a usable JSON Schema."""


def check_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a JSON Schema object (raise ``SchemaError`` naming what is wrong)."""
    if not isinstance(schema, dict):
        raise SchemaError("a schema must be a JSON object")
    validator = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the schema"
        raise SchemaError(f"{where}: {exc.message}") from None
    return schema


def invalid_answer(text: str, schema: dict[str, Any] | None) -> str | None:
    """Why ``text`` is not a JSON answer valid for ``schema`` (None when it is one)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "the answer is not valid JSON"
    if schema is None:
        return None
    validator = validators.validator_for(schema, default=validators.Draft202012Validator)(schema)
    error = exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the answer"
    return f"{where}: {error.message}"[:500]


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
