"""Fixtures the API tests share: the OpenAPI document, as ``api/openapi.yaml`` holds it."""

from __future__ import annotations

from typing import Any

import pytest

from api.openapi_view import load_spec


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()
