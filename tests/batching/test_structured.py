"""Structured answers and function calls in the engine: schemas read and checked
(``batching.structured``), shared schemas and shared functions packed, what fails the check
answered again alone, and only then failed."""

from __future__ import annotations

import asyncio
import json

import pytest

from batching.answer_checks import unfit_entry
from batching.engine import BatchInferenceEngine
from batching.packed_prompt import parse_items, parse_tools, read_answers, structured_answer_schema
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.structured import SchemaError, check_schema, from_gemini_schema, invalid_answer
from batching.types import InferenceRequest, ModelCall, ModelReply, Output, Tools

SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "where": {"$ref": "#/$defs/Place"}},
    "required": ["summary", "where"],
    "additionalProperties": False,
    "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
}
WEATHER = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK = {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}


class SchemaGemini:
    """Answers JSON for the schema and calls the first function; ``bad`` prompts get an answer
    the schema refuses (or text where a call is due), ``bad_args`` calls with arguments the
    function's parameters refuse."""

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []
        self.bad: set[str] = set()
        self.bad_args: set[str] = set()
        self.parallel = False

    async def generate(self, call: ModelCall) -> ModelReply:
        self.calls.append(call)
        await asyncio.sleep(0)
        items = parse_items(call.parts[-1]) if call.json_output or call.response_schema else None
        if items is not None:
            tools = parse_tools(call.parts[-1])
            answers = [self._entry(str(i["id"]), str(i["prompt"]), tools) for i in items]
            if not call.json_output:  # a plain packed call: text answers
                answers = [{"id": i["id"], "answer": f"A:{i['prompt']}"} for i in items]
            return ModelReply(json.dumps({"answers": answers}), 100, 40, "STOP")
        prompt = call.parts[-1] if call.parts else ""
        if call.tools is not None and call.tools.mode != "NONE" and prompt not in self.bad:
            name = call.tools.allowed[0] if call.tools.allowed else call.tools.functions[0]["name"]
            calls = [{"name": name, "args": {"city": prompt}}]
            if self.parallel:
                calls.append({"name": name, "args": {"city": prompt + "!"}})
            return ModelReply("", 10, 5, "STOP", function_calls=tuple(calls))
        if call.json_output:
            text = "not json" if prompt in self.bad else json.dumps(_value(prompt))
            return ModelReply(text, 10, 5, "STOP")
        return ModelReply(f"A:{prompt}", 10, 5, "STOP")

    def _entry(self, item_id: str, prompt: str, tools: dict | None) -> dict:
        if tools is not None:
            args = {"city": 5} if prompt in self.bad_args else {"city": prompt}
            return {"id": item_id, "function_calls": [{"name": tools["functions"][0]["name"], "args": args}]}
        return {"id": item_id, "answer": "oops" if prompt in self.bad else _value(prompt)}

    async def aclose(self) -> None:
        return None


def _value(prompt: str) -> dict:
    return {"summary": f"S:{prompt}", "where": {"city": "Lima"}}


def engine(gemini: SchemaGemini) -> BatchInferenceEngine:
    async def no_sleep(seconds: float) -> None:
        return None

    return BatchInferenceEngine(
        gemini, PackingLimits(), RetryPolicy(attempts=2, base_s=0.1, max_s=1.0), 4, sleep=no_sleep
    )


def requests(n: int, **kw: object) -> list[InferenceRequest]:
    return [InferenceRequest(id=f"t{i}", prompt=f"p{i}", model="m", **kw) for i in range(n)]  # type: ignore[arg-type]


def run(gemini: SchemaGemini, batch: list[InferenceRequest]) -> list:
    return asyncio.run(engine(gemini).run(batch))


# --- schemas --------------------------------------------------------------------------------


def test_gemini_schemas_are_read_as_json_schema() -> None:
    gemini = {
        "type": "OBJECT",
        "properties": {
            "n": {"type": "INTEGER", "nullable": True, "minimum": 1},
            "tags": {
                "type": "ARRAY",
                "items": {"type": "STRING", "format": "enum", "enum": ["a"]},
                "minItems": "1",
            },
        },
        "required": ["n"],
        "propertyOrdering": ["n", "tags"],
    }
    assert from_gemini_schema(gemini) == {
        "type": "object",
        "properties": {
            "n": {"type": ["integer", "null"], "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a"]}, "minItems": 1},
        },
        "required": ["n"],
    }
    with pytest.raises(SchemaError):
        from_gemini_schema({"type": "OBJECT", "properties": {"x": {"type": "ARRAY", "minItems": "many"}}})


def test_answers_are_checked_against_their_schema() -> None:
    assert invalid_answer(json.dumps(_value("x")), SCHEMA) is None
    assert invalid_answer('{"summary": "x"}', SCHEMA) == 'the answer: "where" is a required property'
    assert (
        invalid_answer('{"summary": 1, "where": {"city": "c"}}', SCHEMA)
        == 'summary: 1 is not of type "string"'
    )
    assert invalid_answer('{"summary": "x", ', SCHEMA) == "the answer is not valid JSON"
    assert invalid_answer("[1]", None) is None  # JSON of any shape
    check_schema(SCHEMA)
    with pytest.raises(SchemaError, match="nonsense"):
        check_schema({"type": "nonsense"})
    with pytest.raises(SchemaError, match="regex"):
        check_schema({"type": "string", "pattern": "(?=a)"})  # lookaround: no linear-time engine runs it
    with pytest.raises(SchemaError, match=r"example\.com"):
        check_schema({"$ref": "https://example.com/schema.json"})  # nothing is fetched


def test_a_catastrophic_pattern_is_checked_in_linear_time() -> None:
    """``^(a+)+$`` against 40 a's and a "!" takes hours on a backtracking engine (Python's re):
    one tenant's schema would stall the worker for everyone. Here even 4,000 finish (on a
    backtracking engine the suite's per-test timeout would end this test)."""
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
    for length in (40, 4000):
        answer = json.dumps({"s": "a" * length + "!"})
        assert invalid_answer(answer, schema) is not None


def test_a_nested_answer_schema_keeps_its_definitions_at_the_root() -> None:
    schema = structured_answer_schema(["xa", "xb"], SCHEMA)
    entry = schema["properties"]["answers"]["items"]
    assert schema["$defs"] == SCHEMA["$defs"] and "$defs" not in entry["properties"]["answer"]
    assert entry["properties"]["id"]["enum"] == ["xa", "xb"] and entry["required"] == ["id", "answer"]
    good = {"answers": [{"id": "xa", "answer": _value("a")}, {"id": "xb", "answer": _value("b")}]}
    assert invalid_answer(json.dumps(good), schema) is None
    bad = {
        "answers": [
            {"id": "xa", "answer": {"summary": "a", "where": {}}},
            {"id": "xb", "answer": _value("b")},
        ]
    }
    assert invalid_answer(json.dumps(bad), schema) is not None  # the $ref resolved at the root


def test_same_json_answers_to_different_questions_are_kept() -> None:
    text = json.dumps(
        {"answers": [{"id": "a", "answer": {"label": "spam"}}, {"id": "b", "answer": {"label": "spam"}}]}
    )
    assert read_answers(text, {"a": "q1", "b": "q2"}, json_answers=True).trusted == {
        "a": '{"label": "spam"}',
        "b": '{"label": "spam"}',
    }
    plain = json.dumps({"answers": [{"id": "a", "answer": "spam"}, {"id": "b", "answer": "spam"}]})
    assert read_answers(plain, {"a": "q1", "b": "q2"}).suspect == {"a", "b"}  # text: a sign of forgery


# --- the engine -----------------------------------------------------------------------------


def test_a_shared_schema_is_packed_and_an_invalid_answer_fails_alone_after_a_second_try() -> None:
    gemini = SchemaGemini()
    gemini.bad = {"p2"}
    results = run(gemini, requests(5, output=Output(SCHEMA)))
    packed, *alone = gemini.calls
    assert parse_items(packed.parts[-1]) and packed.response_json_schema is not None and packed.json_output
    assert [c.parts[-1] for c in alone] == ["p2", "p2"]  # answered alone, tried twice
    assert alone[0].response_json_schema == SCHEMA
    assert [r.ok for r in results] == [True, True, False, True, True]
    assert (
        results[2].error_code == "invalid_structured_output" and "not valid JSON" in results[2].error_message
    )
    assert json.loads(results[0].text) == _value("p0") and results[0].items_in_call == 5


def test_json_without_a_schema_is_packed_as_objects() -> None:
    gemini = SchemaGemini()
    results = run(gemini, requests(3, output=Output()))
    assert len(gemini.calls) == 1
    assert gemini.calls[0].response_json_schema["properties"]["answers"]["items"]["properties"]["answer"] == {
        "type": "object"
    }
    assert all(json.loads(r.text) == _value(f"p{i}") for i, r in enumerate(results))


def test_shared_functions_are_packed_and_bad_arguments_are_asked_again_with_native_calling() -> None:
    gemini = SchemaGemini()
    gemini.bad_args = {"p1"}
    results = run(gemini, requests(4, tools=Tools((WEATHER, CLOCK))))
    packed, again = gemini.calls
    tools = parse_tools(packed.parts[-1])
    assert tools is not None and [f["name"] for f in tools["functions"]] == ["get_weather", "get_time"]
    assert packed.tools is None and again.tools is not None and again.parts == ("p1",)
    assert all(r.ok and r.text == "" for r in results)
    for n, result in enumerate(results):
        (call,) = result.function_calls
        assert call["name"] == "get_weather" and call["args"] == {"city": f"p{n}"}
        assert call["id"].startswith("call_")
    assert len({r.function_calls[0]["id"] for r in results}) == 4


def test_calls_of_an_undeclared_function_are_refused() -> None:
    gemini = SchemaGemini()
    text = json.dumps({"answers": [{"id": "xa", "function_calls": [{"name": "rm_rf", "args": {}}]}]})
    answers = read_answers(text, {"xa": "q"}, json_answers=False)
    assert unfit_entry(requests(1, tools=Tools((WEATHER,)))[0], answers, "xa")
    assert gemini.calls == []


def test_no_parallel_calls_keeps_the_first_and_required_calls_are_enforced() -> None:
    gemini = SchemaGemini()
    gemini.parallel = True
    (one,) = run(
        gemini,
        [
            InferenceRequest(
                id="a", prompt="q", model="m", tools=Tools((WEATHER,), parallel=False), stream=True
            )
        ],
    )
    assert len(one.function_calls) == 1
    gemini.bad = {"q"}  # answers in text
    (text,) = run(
        gemini, [InferenceRequest(id="b", prompt="q", model="m", tools=Tools((WEATHER,), "ANY"), stream=True)]
    )
    assert not text.ok and text.error_code == "missing_function_call"


def test_tool_results_go_alone_as_parts_before_the_text() -> None:
    gemini = SchemaGemini()
    result = {"function_response": {"name": "get_weather", "response": {"t": 20}}}
    history = (
        ("user", ({"text": "weather?"},)),
        ("model", ({"function_call": {"name": "get_weather", "args": {}}},)),
    )
    batch = [
        InferenceRequest(
            id="a", prompt="", model="m", parts=(result,), history=history, tools=Tools((WEATHER,), "NONE")
        ),
        *requests(2),
    ]
    results = run(gemini, batch)
    alone = next(c for c in gemini.calls if c.extra_parts)
    assert alone.extra_parts == (result,) and alone.parts == () and alone.history == history
    assert len(gemini.calls) == 2 and all(r.ok for r in results)


def test_a_structured_answer_cut_at_its_limit_fails_at_once_as_truncated() -> None:
    class CutGemini(SchemaGemini):
        async def generate(self, call: ModelCall) -> ModelReply:
            self.calls.append(call)
            return ModelReply('{"summary": "S:p', 10, 5, "MAX_TOKENS")

    gemini = CutGemini()
    (result,) = run(
        gemini, [InferenceRequest(id="a", prompt="p", model="m", output=Output(SCHEMA), stream=True)]
    )
    assert not result.ok and result.error_code == "structured_output_truncated"
    assert "max_output_tokens (256)" in (result.error_message or "") and len(gemini.calls) == 1
