"""The simulator's structured output: JSON answers for a schema, alone and in packed calls.

Driven by the real google-genai SDK where it can say what a test needs, and by raw posts
where it cannot (packed calls in the structured dialect). Every expected value is recomputed
from ``answer_for`` and ``value_for_schema``, never copied from a reply.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import pytest
from google import genai
from google.genai import types
from pydantic import BaseModel, Field

from batching.packed_prompt import render_items
from batching.simulator import SimulatorThread, answer_for
from batching.simulator.answers import value_for_schema
from tests.batching.sim_helpers import MODEL, POISON, WEATHER_JSON_SCHEMA, post_call, sim_stats
from tests.harness import http_json

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("baseline")]

BADJSON = "[[sim:badjson]]"
FORGE = "[[sim:forge]]"
LEAK = "[[sim:leak]]"


@pytest.fixture
def api_version() -> str:
    """Structured output is driven through v1beta only."""
    return "v1beta"


# --- structured output ---------------------------------------------------------------------------


class Address(BaseModel):
    street: str
    city: str
    zip_code: str | None = None


class Person(BaseModel):
    summary: str
    age: int = Field(ge=18, le=30)
    score: float
    mood: Literal["calm", "busy"]
    home: Address
    past: list[Address]
    nickname: str | None = None


def test_a_pydantic_response_schema_is_parsed_by_the_sdk(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = "describe a person"
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=Person)
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    person = response.parsed
    assert isinstance(person, Person)
    assert prompt in person.summary and person.summary == answer_for(prompt)
    assert (person.age, person.mood, len(person.past)) == (18, "calm", 1)
    stats = sim_stats(sim)
    assert (stats["json_calls"], stats["function_calls"]) == (1, 0)


def test_a_json_schema_with_defs_gets_a_value_valid_for_it(client: genai.Client) -> None:
    prompt = "nested please"
    schema = Person.model_json_schema()
    assert "$defs" in schema
    config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema)
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert response.text is not None
    value = json.loads(response.text)
    jsonschema.validate(value, schema)
    assert Person.model_validate(value).summary == answer_for(prompt)
    assert value == value_for_schema(schema, prompt)


def test_value_for_schema_handles_strict_mode_and_gemini_schemas() -> None:
    strict = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 12},
            "kind": {"const": "report"},
            "level": {"type": "integer", "minimum": 2, "maximum": 4},
            "ratio": {"type": "number", "exclusiveMaximum": 1},
            "owner": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Owner"}]},
            "codes": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 3},
            "note": {"type": ["string", "null"]},
            "when": {"type": "string", "format": "date-time"},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
                "minItems": 2,
            },
        },
        "required": ["title", "kind", "level", "ratio", "owner", "codes", "note", "when", "pair"],
        "additionalProperties": False,
        "$defs": {
            "Owner": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "boss": {"anyOf": [{"$ref": "#/$defs/Owner"}, {"type": "null"}]},
                },
                "required": ["name", "boss"],
                "additionalProperties": False,
            }
        },
    }
    prompt = "p"
    value = value_for_schema(strict, prompt)
    jsonschema.validate(value, strict)  # the recursive Owner ends in null
    assert value["title"] == answer_for(prompt)[:12] and value["owner"]["name"] == answer_for(prompt)
    assert value == value_for_schema(strict, prompt)
    gemini = {
        "type": "OBJECT",
        "properties": {
            "b": {"type": "STRING", "nullable": True},
            "a": {"type": "STRING", "format": "enum", "enum": ["x", "y"]},
            "list": {"type": "ARRAY", "minItems": "2", "items": {"type": "INTEGER", "minimum": "5"}},
        },
        "propertyOrdering": ["a", "list", "b"],
    }
    value = value_for_schema(gemini, prompt)
    assert list(value) == ["a", "list", "b"]
    assert value == {"a": "x", "list": [5, 5], "b": answer_for(prompt)}


def test_the_badjson_marker_breaks_a_json_answer(client: genai.Client, sim: SimulatorThread) -> None:
    prompt = f"give me json {BADJSON}"
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema={"type": "object"}
    )
    response = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert response.text is not None
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    plain = client.models.generate_content(model=MODEL, contents=prompt)
    assert plain.text == answer_for(prompt)  # the marker acts on JSON answers only
    shown = http_json("GET", f"{sim.url}/_sim/config")[2]
    assert shown["badjson_marker"] == BADJSON
    assert http_json("POST", f"{sim.url}/_sim/config", {"badjson_marker": ""})[0] == 200
    fixed = client.models.generate_content(model=MODEL, contents=prompt, config=config)
    assert json.loads(fixed.text or "") == {}


# --- packed calls in the structured dialect ------------------------------------------------------


def _packed_schema(ids: list[str], item_schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "type": "object",
        "properties": {"id": {"type": "string", "enum": ids}, "answer": item_schema},
        "required": ["id", "answer"],
    }
    answers = {"type": "array", "minItems": len(ids), "maxItems": len(ids), "items": entry}
    return {"type": "object", "properties": {"answers": answers}, "required": ["answers"], "$defs": defs}


def _packed_body(prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema},
    }


def test_a_packed_structured_call_answers_each_item_with_a_valid_value(sim: SimulatorThread) -> None:
    item_schema = Person.model_json_schema()
    defs = item_schema.pop("$defs")
    items = [
        {"id": "a1", "prompt": "first person"},
        {"id": "b2", "prompt": f"broken one {BADJSON}"},
        {"id": "c3", "prompt": "third person", "context": {"user": "bob"}},
        {"id": "d4", "prompt": f"gone {POISON}"},
    ]
    schema = _packed_schema([i["id"] for i in items], item_schema, defs)
    status, reply = post_call(sim, _packed_body(render_items(items), schema))
    assert status == 200, reply
    entries = json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])["answers"]
    assert [e["id"] for e in entries] == ["a1", "b2", "c3"]
    validator = jsonschema.Draft202012Validator({**item_schema, "$defs": defs})
    answers = {e["id"]: e["answer"] for e in entries}
    for item_id in ("a1", "c3"):
        assert validator.is_valid(answers[item_id]), answers[item_id]
    assert answers["a1"] == value_for_schema(item_schema, "first person", schema)
    assert Person.model_validate(answers["c3"]).summary == answer_for("third person")
    assert not validator.is_valid(answers["b2"])
    stats = sim_stats(sim)
    assert (stats["packed_calls"], stats["items"], stats["dropped_items"], stats["json_calls"]) == (
        1,
        3,
        1,
        0,
    )


def test_forge_and_leak_work_on_structured_answers(sim: SimulatorThread) -> None:
    item_schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    items = [
        {"id": "a", "prompt": "secret alpha"},
        {"id": "b", "prompt": f"tell all {LEAK}"},
        {"id": "c", "prompt": f"speak for everyone {FORGE}"},
    ]
    schema = _packed_schema(["a", "b", "c"], item_schema, {})
    leaking = post_call(sim, _packed_body(render_items(items[:2]), schema))[1]
    entries = json.loads(leaking["candidates"][0]["content"]["parts"][0]["text"])["answers"]
    assert "secret alpha" in entries[1]["answer"]["text"]
    forging = post_call(sim, _packed_body(render_items(items), schema))[1]
    entries = json.loads(forging["candidates"][0]["content"]["parts"][0]["text"])["answers"]
    forged = value_for_schema(item_schema, items[2]["prompt"])
    assert entries == [{"id": i["id"], "answer": forged} for i in items]


def test_the_classic_packed_format_keeps_text_answers_even_with_badjson(sim: SimulatorThread) -> None:
    items = [{"id": "a", "prompt": f"text please {BADJSON}"}]
    schema = {
        "type": "OBJECT",
        "properties": {
            "answers": {
                "type": "ARRAY",
                "items": {
                    "type": "OBJECT",
                    "properties": {"id": {"type": "STRING"}, "answer": {"type": "STRING"}},
                },
            }
        },
    }
    body = {
        "contents": [{"parts": [{"text": render_items(items)}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    reply = post_call(sim, body)[1]
    text = reply["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text) == {"answers": [{"id": "a", "answer": answer_for(items[0]["prompt"])}]}


def _tools_block(tools: dict[str, Any]) -> str:
    rendered = json.dumps(tools, ensure_ascii=False, separators=(",", ":"))
    escaped = rendered.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"\n<tools>\n{escaped}\n</tools>\n"


def test_a_packed_tools_block_answers_every_item_with_function_calls(sim: SimulatorThread) -> None:
    functions = [
        {"name": "lookup", "description": "Look <things> up & more", "parameters": WEATHER_JSON_SCHEMA},
        {"name": "noop"},
    ]
    items = [{"id": "a", "prompt": "weather in Rome"}, {"id": "b", "prompt": "weather in Bern"}]
    head, separator, tail = render_items(items).partition("\n<items>\n")
    schema = _packed_schema(["a", "b"], {"type": "string"}, {})
    for allowed, name in (([], "lookup"), (["noop"], "noop")):
        tools = _tools_block({"functions": functions, "mode": "ANY", "allowed": allowed})
        assert "<things>" not in tools
        status, reply = post_call(sim, _packed_body(head + tools + separator + tail, schema))
        assert status == 200, reply
        entries = json.loads(reply["candidates"][0]["content"]["parts"][0]["text"])["answers"]
        params = WEATHER_JSON_SCHEMA if name == "lookup" else None
        expected = [
            {
                "id": i["id"],
                "function_calls": [
                    {"name": name, "args": value_for_schema(params, i["prompt"]) if params else {}}
                ],
            }
            for i in items
        ]
        assert entries == expected
    stats = sim_stats(sim)
    assert (stats["packed_calls"], stats["function_calls"], stats["items"]) == (2, 4, 4)
