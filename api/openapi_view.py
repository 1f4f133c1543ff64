"""The OpenAPI document of the public API: ``api/openapi.yaml``, served as JSON (no key needed).

The YAML file is the source (comments, anchors); it is parsed once per process. The served
copy carries the running prompt limit, the one bound of a request schema that is a setting.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response

from api.services import services

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")

SPEC_PATH = Path(__file__).resolve().parent / "openapi.yaml"


@cache
def load_spec() -> dict[str, Any]:
    """The document as written in ``api/openapi.yaml`` (parsed once; do not mutate it)."""
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec: dict[str, Any] = yaml.safe_load(handle)
    return spec


def spec_for(max_prompt_chars: int) -> dict[str, Any]:
    """The document with the prompt limit of the running settings."""
    spec = copy.deepcopy(load_spec())
    spec["components"]["schemas"]["TaskRequest"]["properties"]["prompt"]["maxLength"] = max_prompt_chars
    return spec


@cache
def _document_json(max_prompt_chars: int) -> str:
    return json.dumps(spec_for(max_prompt_chars), ensure_ascii=False, separators=(",", ":"))


@bp.get("/openapi.json")
def document() -> Response:
    """This API's OpenAPI 3.1 document."""
    return Response(_document_json(services().settings.api.max_prompt_chars), mimetype="application/json")
