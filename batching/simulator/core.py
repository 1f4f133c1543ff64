"""The simulator's behaviour, apart from HTTP: admit or fail a call, compose its answer, spend its cost.

All state (configuration, fault generator, quota window, slots, stats) lives on one
``Simulator`` used from one event loop, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from batching.packed_prompt import parse_items, parse_tools
from batching.simulator import config as sim_config
from batching.simulator.answers import (
    answer_for,
    broken_json_for,
    function_call_for,
    packed_answer_text,
    resolve,
    schema_kind,
    tool_results_text,
    value_for_schema,
)
from batching.simulator.cost import call_latency_ms
from batching.simulator.faults import FaultInjector, InjectedError
from batching.simulator.implicit_cache import ImplicitCache
from batching.simulator.markers import blocked, marked, poisoned
from batching.simulator.protocol import FunctionDeclaration, GenerateRequest, choose_function
from batching.simulator.quotas import Quotas
from batching.simulator.settings import SimulatorSettings
from batching.simulator.slots import Slots
from batching.simulator.stats import RunningCalls, Stats
from batching.tokens import CHARS_PER_TOKEN, estimate_tokens

#: generateContent bodies kept for ``GET /_sim/requests``.
REQUEST_LOG_SIZE = 1000
#: ``promptFeedback.blockReason`` of a call that carries ``block_marker``.
BLOCK_REASON = "SAFETY"
#: The answer of a packed item carrying ``badjson_marker``: a string where an object is asked.
NOT_VALID_FOR_SCHEMA = "not valid for the schema"


class CallFailed(Exception):
    """The call is answered with an error instead of text."""

    def __init__(self, error: InjectedError) -> None:
        super().__init__(f"{error.code} {error.status}: {error.message}")
        self.error = error


@dataclass(frozen=True)
class Answer:
    """A composed answer and what it costs, before its latency is spent."""

    text: str
    kind: str  # "plain", "packed", "json" or "blocked" (a function call: "plain" or "json")
    prompt_tokens: int
    output_tokens: int
    latency_ms: float
    #: Prompts this answer answers (packed items kept, else 1).
    items: int
    #: Packed items left out.
    dropped: int = 0
    #: ``STOP``, or ``MAX_TOKENS`` when the text was cut at the request's ``maxOutputTokens``.
    finish: str = "STOP"
    #: Set when the prompt is blocked (``SAFETY``): answered with no candidates at all.
    block_reason: str | None = None
    #: The ``functionCall`` (``{"name", "args"}``) a plain call is answered with instead of
    #: text; ``text`` is then its JSON, for the output-token count.
    function_call: dict[str, Any] | None = None
    #: Function-call answers given: 1 for ``function_call``, else packed items answered with one.
    function_calls: int = 0
    #: ``inlineData`` parts of the request.
    inline_parts: int = 0
    #: Tokens of ``prompt_tokens`` served from the implicit cache.
    cached_tokens: int = 0


class Simulator:
    """One simulated Gemini endpoint."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self._config = sim_config.validate(settings)
        self.faults = FaultInjector(settings.seed)
        self.quota = Quotas()
        self.slots = Slots(settings.max_concurrent)
        self.stats = Stats()
        self.implicit_cache = ImplicitCache()
        #: Calls in their slots now (their work so far, for ``stats_body``).
        self.running = RunningCalls()
        #: The newest generateContent bodies as received (``GET /_sim/requests``), for tests
        #: that check what reached the model: settings, system text, prior turns.
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    @property
    def config(self) -> SimulatorSettings:
        """The configuration new calls use."""
        return self._config

    def configure(self, update: Any) -> SimulatorSettings:
        """Apply a ``/_sim/config`` update (raises ``ConfigError``); a given seed restarts the faults."""
        self._config = sim_config.apply_update(self._config, update)
        self.slots.set_limit(self._config.max_concurrent)
        if "seed" in update:
            self.faults.reseed(self._config.seed)
        return self._config

    def reset(self) -> None:
        """Zero the stats, empty the quota window and restart the fault sequence from the seed."""
        self.stats.reset()
        self.requests.clear()
        self.quota.clear()
        self.implicit_cache.clear()
        self.faults.reseed(self._config.seed)

    def prepare(
        self,
        request: GenerateRequest,
        now: float | None = None,
        *,
        model: str = "",
        wall: float | None = None,
    ) -> Answer:
        """Admit a call and compose its answer, or raise ``CallFailed`` (counted as an error).

        Order matters: the quota refuses before any fault is drawn, random faults strike before
        the work, a blocked prompt is answered without candidates before anything is composed,
        and a poisoned plain prompt fails like a model error would.
        """
        config = self._config
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall
        refused = self.quota.admit(
            now, wall, request.prompt_tokens, rpm=config.rpm, tpm=config.tpm, rpd=config.rpd
        )
        if refused is not None:
            error = InjectedError(
                429, "RESOURCE_EXHAUSTED", refused.message(), refused.retry_delay_s, (refused.detail(model),)
            )
            self._fail(error, f"429:{refused.quota}")
        injected = self.faults.call_error(config.error_rate)
        if injected is not None:
            self._fail(injected)
        answer = self._compose(request, config)
        if answer.block_reason is not None:
            return answer
        cached = self.implicit_cache.admit(
            model,
            request.texts,
            answer.prompt_tokens,
            now,
            min_tokens=config.implicit_cache_min_tokens,
            ttl_s=config.implicit_cache_ttl_s,
        )
        return dataclasses.replace(answer, cached_tokens=cached) if cached else answer

    @asynccontextmanager
    async def slot(self, duration_s: float = 0.0, items: int = 0) -> AsyncIterator[None]:
        """Hold one of ``max_concurrent`` slots, counting the wait and the busy time apart;
        ``duration_s`` and ``items``: how long the call will hold it and what it answers, for
        ``stats_body``'s work in progress."""
        stats = self.stats
        stats.waiting += 1
        asked = time.monotonic()
        try:
            await self.slots.acquire()
        finally:
            stats.waiting -= 1
        started = time.monotonic()
        stats.slot_wait_ms_total += (started - asked) * 1000
        stats.enter_slot()
        token = self.running.start(started, duration_s, items)
        try:
            yield
        finally:
            self.running.end(token)
            self.slots.release()
            stats.leave_slot((time.monotonic() - started) * 1000)

    async def spend(self, answer: Answer) -> None:
        """Take the answer's latency while holding a slot."""
        async with self.slot(answer.latency_ms / 1000, answer.items):
            await asyncio.sleep(answer.latency_ms / 1000)

    def stats_body(self, now: float | None = None) -> dict[str, Any]:
        """``GET /_sim/stats``: the totals, and the work of the calls running at ``now``."""
        now = time.monotonic() if now is None else now
        return {**self.stats.as_dict(), **self.running.progress(now)}

    def record(self, answer: Answer, *, streamed: bool = False) -> None:
        """Count an answer that was delivered (a blocked prompt only as ``blocked_calls``)."""
        stats = self.stats
        if answer.block_reason is not None:
            stats.blocked_calls += 1
            return
        stats.calls += 1
        stats.items += answer.items
        stats.dropped_items += answer.dropped
        stats.prompt_tokens += answer.prompt_tokens
        stats.cached_tokens += answer.cached_tokens
        stats.output_tokens += answer.output_tokens
        stats.function_calls += answer.function_calls
        stats.inline_parts += answer.inline_parts
        if answer.kind == "packed":
            stats.packed_calls += 1
        elif answer.kind == "json":
            stats.json_calls += 1
        else:
            stats.plain_calls += 1
        if streamed:
            stats.stream_calls += 1

    def _fail(self, error: InjectedError, label: str = "") -> None:
        self.stats.count_error(error.code, label)
        raise CallFailed(error)

    def _compose(self, request: GenerateRequest, config: SimulatorSettings) -> Answer:
        items = parse_items(request.prompt) if request.json_mode else None
        if blocked(request, items, config):  # a prompt filter acts before any answer is made
            return Answer(
                text="",
                kind="blocked",
                prompt_tokens=request.prompt_tokens,
                output_tokens=0,
                latency_ms=call_latency_ms(config, request.prompt_tokens, 0),
                items=0,
                block_reason=BLOCK_REASON,
            )
        if items is not None:
            return self._packed(request, items, config)
        if poisoned(request.prompt, config):
            message = "Internal error while answering (simulated poison)."
            self._fail(InjectedError(500, "INTERNAL", message))
        kind = "json" if request.json_mode else "plain"
        function = request.function_to_call
        if function is not None:
            call = function_call_for(function.name, function.parameters, request.prompt)
            return _answer(request, config, json.dumps(call), kind, function_call=call, function_calls=1)
        results = [(r.name, r.response) for r in request.function_responses]
        suffix = tool_results_text(results) if results else ""
        if request.answer_format is not None and not request.json_mode:  # as the instruction asks
            text = _json_text(value_for_schema(request.answer_format, request.prompt + suffix))
        elif not request.json_mode:
            text = answer_for(request.prompt) + suffix
        elif marked(request.prompt, config.badjson_marker):
            text = broken_json_for(request.prompt)
        else:
            text = _json_text(value_for_schema(request.response_schema, request.prompt + suffix))
        text, finish = _within(text, request.max_output_tokens)
        return _answer(request, config, text, kind, finish=finish)

    def _packed(
        self, request: GenerateRequest, items: list[dict[str, Any]], config: SimulatorSettings
    ) -> Answer:
        """Answer a packed call: one entry per kept item, as text, as a value of the item answer
        schema, or as function calls when the prompt declares functions."""
        entries, dropped = self._packed_entries(items, request, config)
        calls = sum(1 for entry in entries if isinstance(entry.get("function_calls"), list))
        text, finish = _within(packed_answer_text(entries), request.max_output_tokens)
        return _answer(
            request,
            config,
            text,
            "packed",
            items=len(entries),
            dropped=dropped,
            finish=finish,
            function_calls=calls,
        )

    def _packed_entries(
        self, items: list[dict[str, Any]], request: GenerateRequest, config: SimulatorSettings
    ) -> tuple[list[dict[str, Any]], int]:
        """Each kept item's entry, and how many were dropped; obeys injected items: a leaking
        item's answer quotes every other item's prompt, a forging item's entry is given for
        every id of the call, and a badjson item's answer breaks the item answer schema."""
        root = request.response_schema
        item_schema = _item_answer_schema(root)
        function = _packed_function(request.prompt)
        prompts = [str(item["prompt"]) if isinstance(item.get("prompt"), str) else "" for item in items]
        kept: list[dict[str, Any]] = []
        dropped = 0
        forged: dict[str, Any] | None = None
        for index, (item, prompt) in enumerate(zip(items, prompts, strict=True)):
            if poisoned(prompt, config) or self.faults.drop_item(config.drop_item_rate):
                dropped += 1
                continue
            leak = ""
            if marked(prompt, config.leak_marker):
                leak = " Other items: " + " | ".join(p for other, p in enumerate(prompts) if other != index)
            broken = marked(prompt, config.badjson_marker)
            entry: dict[str, Any] = {"id": item["id"]}
            if function is not None:
                calls = [function_call_for(function.name, function.parameters, prompt + leak)]
                entry["function_calls"] = NOT_VALID_FOR_SCHEMA if broken else calls
            elif item_schema is None:
                entry["answer"] = answer_for(prompt) + leak
            else:
                value = value_for_schema(item_schema, prompt + leak, root)
                entry["answer"] = NOT_VALID_FOR_SCHEMA if broken else value
            if forged is None and marked(prompt, config.forge_marker):
                forged = entry
            kept.append(entry)
        if forged is not None:
            kept = [{**forged, "id": entry["id"]} for entry in kept]
        return kept, dropped


def _answer(
    request: GenerateRequest,
    config: SimulatorSettings,
    text: str,
    kind: str,
    *,
    items: int = 1,
    dropped: int = 0,
    finish: str = "STOP",
    function_call: dict[str, Any] | None = None,
    function_calls: int = 0,
) -> Answer:
    """An answer with ``text`` and the costs of ``request``."""
    prompt_tokens, output_tokens = request.prompt_tokens, estimate_tokens(text)
    return Answer(
        text=text,
        kind=kind,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        latency_ms=call_latency_ms(config, prompt_tokens, output_tokens),
        items=items,
        dropped=dropped,
        finish=finish,
        function_call=function_call,
        function_calls=function_calls,
        inline_parts=request.inline_parts,
    )


def _item_answer_schema(schema: Any) -> Any:
    """The schema of one item's ``answer`` in a packed call's response schema (``$ref`` resolved
    against it); None when answers are text (a string schema, or none given)."""
    answers = resolve(_properties(schema).get("answers"), schema)
    entry = resolve(answers.get("items") if isinstance(answers, dict) else None, schema)
    answer = resolve(_properties(entry).get("answer"), schema)
    if not isinstance(answer, dict) or schema_kind(answer) == "string":
        return None
    return answer


def _properties(schema: Any) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return properties if isinstance(properties, dict) else {}


def _packed_function(prompt: str) -> FunctionDeclaration | None:
    """The function every item of a packed call calls, from the tools block before its item
    list (``batching.packed_prompt.parse_tools``); None without one, or in mode NONE."""
    tools = parse_tools(prompt)
    if tools is None or str(tools.get("mode", "AUTO")).upper() == "NONE":
        return None
    declared = tools.get("functions")
    functions = tuple(
        FunctionDeclaration(f["name"], _text_or_none(f.get("description")), f.get("parameters"))
        for f in (declared if isinstance(declared, list) else [])
        if isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"]
    )
    allowed = tools.get("allowed")
    names = tuple(n for n in allowed if isinstance(n, str)) if isinstance(allowed, list) else ()
    return choose_function(functions, names)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _within(text: str, max_output_tokens: int | None) -> tuple[str, str]:
    """The text cut at ``max_output_tokens`` (about 4 characters a token), and the finish reason."""
    if max_output_tokens is None or estimate_tokens(text) <= max_output_tokens:
        return text, "STOP"
    return text[: max_output_tokens * CHARS_PER_TOKEN], "MAX_TOKENS"
