"""Talking to the embedded simulator in its tests: SDK clients, /_sim control, packed calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from google import genai
from google.genai import types

from batching.packed_prompt import answer_schema, read_answers, render_items
from batching.simulator import SimulatorThread
from tests.harness import http_json

MODEL = "gemini-2.5-flash"
POISON = "[[sim:fail]]"
API_VERSIONS = ["v1", "v1beta"]
WEATHER_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}


def sdk_client(url: str, api_version: str) -> genai.Client:
    return genai.Client(api_key="test", http_options=types.HttpOptions(base_url=url, api_version=api_version))


@asynccontextmanager
async def async_sdk_client(url: str, api_version: str) -> AsyncIterator[genai.Client]:
    """An SDK client whose async session is closed on the loop that opened it."""
    sdk = sdk_client(url, api_version)
    try:
        yield sdk
    finally:
        await sdk.aio.aclose()
        sdk.close()


def configure(sim: SimulatorThread, **changes: Any) -> dict[str, Any]:
    status, _, body = http_json("POST", f"{sim.url}/_sim/config", changes)
    assert status == 200, body
    return body


def sim_stats(sim: SimulatorThread) -> dict[str, Any]:
    return http_json("GET", f"{sim.url}/_sim/stats")[2]


def post_call(sim: SimulatorThread, body: dict[str, Any], method: str = "generateContent") -> tuple[int, Any]:
    status, _, reply = http_json("POST", f"{sim.url}/v1beta/models/{MODEL}:{method}", body)
    return status, reply


def json_config(schema: Any = None, **fields: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=schema, **fields
    )


def packed_call(client: genai.Client, items: list[dict[str, Any]]) -> types.GenerateContentResponse:
    schema = answer_schema([str(i["id"]) for i in items])
    return client.models.generate_content(
        model=MODEL, contents=render_items(items), config=json_config(schema)
    )


def trusted_answers(text: str | None, items: list[dict[str, Any]]) -> dict[str, str]:
    """The entries a worker would trust (each id its own fingerprint: none may share a text)."""
    return read_answers(text or "", {str(i["id"]): str(i["id"]) for i in items}).trusted
