"""Holding a request body to the OpenAPI document's schemas and to the pydantic models."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from api.errors import ApiError
from api.schemas import parse_task_request
from batchgate.settings import Settings


def validator(spec: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


def accepted_by_model(body: Any) -> bool:
    return refusal_by_model(body) is None


def refusal_by_model(body: Any) -> str | None:
    """Why the model refuses ``body`` (None: it accepts it)."""
    try:
        parse_task_request(body, Settings().api.max_prompt_chars, Settings().api.max_context_chars)
    except ApiError as refused:
        return refused.message
    return None
