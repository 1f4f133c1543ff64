"""The OpenAPI document (``api/openapi.yaml``) stays true: it is valid OpenAPI 3.1, it names
exactly the app's routes and methods, its request schemas accept what the pydantic models
accept and refuse what they refuse, and the API serves it. (Responses are checked against it
on a real stack by schemathesis: ``tests/test_fuzz.py``.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from api import create_app
from api.errors import ApiError
from api.gemini_view import to_task as gemini_task
from api.openai_view import to_task as openai_task
from api.openapi_view import SPEC_PATH, load_spec, spec_for
from api.schemas import TaskRequest, parse_task_request
from batchgate.generation import Generation
from batchgate.preferences import Preferences
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


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


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
        Settings().max_prompt_chars
    )


def test_the_yaml_file_ships_with_the_package() -> None:
    setup_cfg = (Path(__file__).resolve().parent.parent / "setup.cfg").read_text()
    package_data = setup_cfg.split("[options.package_data]", 1)[1].split("[", 1)[0]
    assert re.search(r"^api\s*=.*\bopenapi\.yaml\b", package_data, re.MULTILINE)
    assert SPEC_PATH.parent.name == "api" and SPEC_PATH.is_file()


# --- request schemas against the models --------------------------------------------------------


def validator(spec: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


@pytest.mark.parametrize(
    ("schema", "model"),
    [("TaskRequest", TaskRequest), ("Generation", Generation), ("Preferences", Preferences)],
)
def test_request_schemas_have_the_models_fields_and_forbid_others(
    spec: dict[str, Any], schema: str, model: type[BaseModel]
) -> None:
    documented = spec["components"]["schemas"][schema]
    assert set(documented["properties"]) == set(model.model_fields)
    assert set(documented.get("required", [])) == {
        n for n, f in model.model_fields.items() if f.is_required()
    }
    assert documented["additionalProperties"] is False
    assert model.model_config.get("extra") == "forbid"


def accepted_by_model(body: Any) -> bool:
    try:
        parse_task_request(body, Settings().max_prompt_chars, Settings().max_context_chars)
    except ApiError:
        return False
    return True


#: Values at and beyond each generation bound, and of the wrong type.
GENERATION_PROBES: dict[str, list[Any]] = {
    "temperature": [0, 2, 2.0001, -0.0001, 1.5, "1", True, None],
    "top_p": [0, 0.0001, 1, 1.0001, None],
    "top_k": [0, 1, 1000, 1001, 1.5, "5", None],
    "max_output_tokens": [0, 1, 65536, 65537, True, None],
    "stop_sequences": [[], ["a"] * 5, ["a"] * 6, "a", [1], None],
    "seed": [0, -(2**31), 2**31 - 1, 2**31, -(2**31) - 1, 1.5, None],
    "presence_penalty": [-2, 2, -2.1, 2.1, None],
    "frequency_penalty": [-2, 2, -2.1, 2.1, "0", None],
}
PROBES: list[Any] = [
    {"prompt": "x"},
    {"prompt": "x", "system": None, "context": None, "model": None, "generation": None, "strategy": None},
    {"prompt": "x", "cache": None, "stream": None, "session_id": None, "user_id": None},
    {"prompt": "x", "system": "s", "context": {"a": [1, {"b": None}]}, "model": "gemini-2.5-flash"},
    {
        "prompt": "x",
        "strategy": "pack",
        "cache": False,
        "stream": True,
        "session_id": "a.b:c-d_e",
        "user_id": "u1",
    },
    {"prompt": "x" * 200_000},
    {"prompt": "x" * 200_001},
    {"prompt": " x "},
    {},
    {"prompt": ""},
    {"prompt": "   "},
    {"prompt": "\t\n"},
    {"prompt": 1},
    {"prompt": None},
    {"prompt": "x", "extra": 1},
    {"prompt": "x", "system": "s" * 100_000},
    {"prompt": "x", "system": "s" * 100_001},
    {"prompt": "x", "system": 1},
    {"prompt": "x", "context": []},
    {"prompt": "x", "context": "c"},
    {"prompt": "x", "model": "m" * 100},
    {"prompt": "x", "model": "m" * 101},
    {"prompt": "x", "model": "-m"},
    {"prompt": "x", "model": "a/b"},
    {"prompt": "x", "model": "a b"},
    {"prompt": "x", "model": 5},
    {"prompt": "x", "strategy": "fast"},
    {"prompt": "x", "cache": "false"},
    {"prompt": "x", "cache": 0},
    {"prompt": "x", "stream": 1},
    {"prompt": "x", "session_id": ""},
    {"prompt": "x", "session_id": "s" * 128},
    {"prompt": "x", "session_id": "s" * 129},
    {"prompt": "x", "session_id": ".s"},
    {"prompt": "x", "session_id": "s/t"},
    {"prompt": "x", "user_id": "ü"},
    {"prompt": "x", "user_id": 7},
    {"prompt": "x", "history": [{"role": "user", "text": "Hi"}, {"role": "model", "text": "Hello"}]},
    {"prompt": "x", "history": []},
    {"prompt": "x", "history": [{"role": "user", "text": ""}] * 1000},
    {"prompt": "x", "history": [{"role": "user", "text": ""}] * 1001},
    {"prompt": "x", "history": [{"role": "assistant", "text": "Hello"}]},
    {"prompt": "x", "history": [{"role": "user"}]},
    {"prompt": "x", "history": [{"role": "user", "text": "Hi", "at": 1}]},
    {"prompt": "x", "history": {"role": "user", "text": "Hi"}},
    {"prompt": "x", "generation": {}},
    {"prompt": "x", "generation": "g"},
    {"prompt": "x", "generation": {"other": 1}},
    *(
        {"prompt": "x", "generation": {name: value}}
        for name, values in GENERATION_PROBES.items()
        for value in values
    ),
]


@pytest.mark.parametrize("body", PROBES, ids=lambda body: json.dumps(body)[:70])
def test_the_task_schema_accepts_exactly_what_the_model_accepts(spec: dict[str, Any], body: Any) -> None:
    assert validator(spec, "TaskRequest").is_valid(body) == accepted_by_model(body)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"model": "gemini-2.5-pro", "system": "s", "language": "French", "generation": {"temperature": 0.3}},
        {"language": "Simplified Chinese"},
        {"language": "pt-BR"},
        {"language": "x" * 65},
        {"language": " French"},
        {"language": 5},
        {"generation": {"top_k": 0}},
        {"colour": "red"},
    ],
)
def test_the_preferences_schema_accepts_exactly_what_the_model_accepts(
    spec: dict[str, Any], document: dict[str, Any]
) -> None:
    try:
        Preferences.model_validate(document)
        accepted = True
    except ValueError:
        accepted = False
    assert validator(spec, "Preferences").is_valid(document) == accepted


def test_the_documented_examples_are_valid_and_accepted(spec: dict[str, Any]) -> None:
    bodies = spec["components"]["requestBodies"]
    for example in bodies["TaskRequest"]["content"]["application/json"]["examples"].values():
        assert validator(spec, "TaskRequest").is_valid(example["value"])
        assert accepted_by_model(example["value"])
    gemini = bodies["GenerateContentRequest"]["content"]["application/json"]["example"]
    assert validator(spec, "GenerateContentRequest").is_valid(gemini)
    gemini_task(gemini, "gemini-2.5-flash", 200_000, 100_000)
    openai = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"][
        "example"
    ]
    assert validator(spec, "ChatCompletionRequest").is_valid(openai)
    openai_task(openai, 200_000, 100_000)
    preferences = spec["paths"]["/api/v1/users/{user_id}/preferences"]["put"]["requestBody"]["content"]
    assert validator(spec, "Preferences").is_valid(preferences["application/json"]["example"])
    Preferences.model_validate(preferences["application/json"]["example"])


def test_the_drop_in_schemas_name_the_fields_their_parsers_take(spec: dict[str, Any]) -> None:
    from api.gemini_view import GENERATION_FIELDS as GEMINI_GENERATION
    from api.openai_view import GENERATION_FIELDS as OPENAI_GENERATION
    from api.openai_view import IGNORED_FIELDS

    schemas = spec["components"]["schemas"]
    gemini = schemas["GenerateContentRequest"]["properties"]
    assert set(gemini) == {"contents", "systemInstruction", "generationConfig", "safetySettings"}
    assert set(gemini["generationConfig"]["properties"]) == set(GEMINI_GENERATION)
    openai = schemas["ChatCompletionRequest"]["properties"]
    assert set(openai) == {"model", "messages", "stream", "n", *OPENAI_GENERATION, *IGNORED_FIELDS}
