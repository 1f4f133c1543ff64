"""The OpenAPI document (``api/openapi.yaml``) stays true: it is valid OpenAPI 3.1, it names
exactly the app's routes and methods, and the API serves it. Its request schemas accept what the
pydantic models accept and refuse what they refuse (``test_openapi_request_schemas.py``), and its
examples and drop-in schemas are taken by their parsers (``test_openapi_examples.py``).
(Responses are checked against it on a real stack by schemathesis: ``tests/e2e/test_fuzz.py``.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate as validate_openapi

from api import create_app
from api.openapi_view import SPEC_PATH, load_spec, spec_for
from batchgate.settings import Settings

#: Routes that are not part of the public API, and why.
NOT_IN_SPEC = {
    "static": "Flask's default static route; the app serves no static files from it",
    "dashboard.page": "the dashboard's HTML page, for people",
    "dashboard.asset": "the dashboard's built JavaScript and CSS",
}
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
DROPIN_PREFIXES = ("/v1beta/", "/v1/")


@pytest.fixture(scope="module")
def app(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    run_dir = tmp_path_factory.mktemp("openapi-run")
    settings = Settings.from_env(
        {
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_RUN_DIR": str(run_dir),
            "BATCHGATE_MAX_PROMPT_CHARS": "1234",
        }
    )
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["batchgate"].http_requests.close()


def openapi_path(rule: str) -> str:
    """``/api/v1/tasks/<task_id>`` as OpenAPI writes it: ``/api/v1/tasks/{task_id}``."""
    return re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate_openapi(spec)
    assert spec["openapi"].startswith("3.1")
    ids = [
        op["operationId"] for item in spec["paths"].values() for m, op in item.items() if m in HTTP_METHODS
    ]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_route_is_documented_with_its_methods_and_nothing_else_is(
    app: Flask, spec: dict[str, Any]
) -> None:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_IN_SPEC:
            continue
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        routes.setdefault(openapi_path(rule.rule), set()).update(methods)
    documented = {path: {m for m in item if m in HTTP_METHODS} for path, item in spec["paths"].items()}
    assert documented == routes


def test_every_route_left_out_exists(app: Flask) -> None:
    """The exclusion list names real endpoints (a renamed one would hide a new route)."""
    assert set(NOT_IN_SPEC) <= {rule.endpoint for rule in app.url_map.iter_rules()}


def test_every_error_response_has_the_error_shape_of_its_endpoint(spec: dict[str, Any]) -> None:
    responses = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                ref = response["content"]["application/json"]["schema"]["$ref"]
                expected = "Error"
                if path.startswith(DROPIN_PREFIXES) and int(status) not in (404, 413):
                    expected = "OpenAIError" if path == "/v1/chat/completions" else "GeminiError"
                assert ref == f"#/components/schemas/{expected}", (method, path, status)
            assert {"401"} <= set(operation["responses"]) or operation.get("security") == [], (method, path)


def test_the_api_serves_the_document_as_json_without_a_key(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    served = json.loads(response.data)
    assert served == spec_for(1234)
    # The running prompt limit (here 1234), where the file has the default.
    assert served["components"]["schemas"]["TaskRequest"]["properties"]["prompt"]["maxLength"] == 1234
    assert load_spec()["components"]["schemas"]["TaskRequest"]["properties"]["prompt"]["maxLength"] == (
        Settings().api.max_prompt_chars
    )


def test_the_yaml_file_ships_with_the_package() -> None:
    setup_cfg = (Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    package_data = setup_cfg.split("[options.package_data]", 1)[1].split("[", 1)[0]
    assert re.search(r"^api\s*=.*\bopenapi\.yaml\b", package_data, re.MULTILINE)
    assert SPEC_PATH.parent.name == "api" and SPEC_PATH.is_file()


def test_flask_finds_the_app_by_its_folder_name(redis_url: str, tmp_path: Path) -> None:
    """``flask --app api routes`` (and so ``flask --app api run``): the factory reads its
    settings from the environment when given none."""
    env = {**os.environ, "BATCHGATE_REDIS_URL": redis_url, "BATCHGATE_RUN_DIR": str(tmp_path)}
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "api", "routes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "/api/v1/tasks" in listed and "/v1/chat/completions" in listed
