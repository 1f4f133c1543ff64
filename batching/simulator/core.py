"""The simulator's behaviour, apart from HTTP: admit or fail a call, compose its answer, spend its cost.

All state (configuration, fault generator, quota window, slots, stats) lives on one
``Simulator`` used from one event loop, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from batchgate.settings import SimulatorSettings
from batching.packed_prompt import parse_items
from batching.simulator import config as sim_config
from batching.simulator.answers import answer_for, packed_answer_text, value_for_schema
from batching.simulator.cost import QuotaWindow, call_latency_ms, retry_delay_s
from batching.simulator.faults import FaultInjector, InjectedError
from batching.simulator.protocol import GenerateRequest
from batching.simulator.slots import Slots
from batching.simulator.stats import Stats
from batching.tokens import CHARS_PER_TOKEN, estimate_tokens

#: generateContent bodies kept for ``GET /_sim/requests``.
REQUEST_LOG_SIZE = 1000
#: ``promptFeedback.blockReason`` of a call that carries ``block_marker``.
BLOCK_REASON = "SAFETY"


class CallFailed(Exception):
    """The call is answered with an error instead of text."""

    def __init__(self, error: InjectedError) -> None:
        super().__init__(f"{error.code} {error.status}: {error.message}")
        self.error = error


@dataclass(frozen=True)
class Answer:
    """A composed answer and what it costs, before its latency is spent."""

    text: str
    kind: str  # "plain", "packed", "json" or "blocked"
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


class Simulator:
    """One simulated Gemini endpoint."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self._config = sim_config.validate(settings)
        self.faults = FaultInjector(settings.seed)
        self.quota = QuotaWindow()
        self.slots = Slots(settings.max_concurrent)
        self.stats = Stats()
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
        self.faults.reseed(self._config.seed)

    def prepare(self, request: GenerateRequest, now: float | None = None) -> Answer:
        """Admit a call and compose its answer, or raise ``CallFailed`` (counted as an error).

        Order matters: the quota refuses before any fault is drawn, random faults strike before
        the work, a blocked prompt is answered without candidates before anything is composed,
        and a poisoned plain prompt fails like a model error would.
        """
        config = self._config
        now = time.monotonic() if now is None else now
        wait_s = self.quota.admit(now, config.rpm)
        if wait_s > 0:
            message = f"Quota exceeded: {config.rpm} requests per minute (simulated)."
            self._fail(InjectedError(429, "RESOURCE_EXHAUSTED", message, retry_delay_s(wait_s)))
        injected = self.faults.call_error(config.error_rate)
        if injected is not None:
            self._fail(injected)
        return self._compose(request, config)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of ``max_concurrent`` slots, counting the wait and the busy time apart."""
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
        try:
            yield
        finally:
            self.slots.release()
            stats.leave_slot((time.monotonic() - started) * 1000)

    async def spend(self, answer: Answer) -> None:
        """Take the answer's latency while holding a slot."""
        async with self.slot():
            await asyncio.sleep(answer.latency_ms / 1000)

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
        stats.output_tokens += answer.output_tokens
        if answer.kind == "packed":
            stats.packed_calls += 1
        elif answer.kind == "json":
            stats.json_calls += 1
        else:
            stats.plain_calls += 1
        if streamed:
            stats.stream_calls += 1

    def _fail(self, error: InjectedError) -> None:
        self.stats.count_error(error.code)
        raise CallFailed(error)

    def _compose(self, request: GenerateRequest, config: SimulatorSettings) -> Answer:
        items = parse_items(request.prompt) if request.json_mode else None
        if _blocked(request, items, config):  # a prompt filter acts before any answer is made
            return Answer(
                text="",
                kind="blocked",
                prompt_tokens=request.prompt_tokens,
                output_tokens=0,
                latency_ms=call_latency_ms(config, request.prompt_tokens, 0),
                items=0,
                block_reason=BLOCK_REASON,
            )
        dropped = 0
        if items is not None:
            kept, dropped = self._packed_answers(items, config)
            text, kind, answered = packed_answer_text(kept), "packed", len(kept)
        else:
            if _poisoned(request.prompt, config):
                message = "Internal error while answering (simulated poison)."
                self._fail(InjectedError(500, "INTERNAL", message))
            answered = 1
            if request.json_mode:
                kind = "json"
                text = _json_text(value_for_schema(request.response_schema, request.prompt))
            else:
                kind, text = "plain", answer_for(request.prompt)
        text, finish = _within(text, request.max_output_tokens)
        prompt_tokens, output_tokens = request.prompt_tokens, estimate_tokens(text)
        return Answer(
            text=text,
            kind=kind,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            latency_ms=call_latency_ms(config, prompt_tokens, output_tokens),
            items=answered,
            dropped=dropped,
            finish=finish,
        )

    def _packed_answers(
        self, items: list[dict[str, Any]], config: SimulatorSettings
    ) -> tuple[list[tuple[Any, str]], int]:
        """Each kept item's (id, answer), and how many were dropped; obeys injected items:
        a leaking item's answer quotes every other item's prompt, and a forging item's answer
        is given for every id of the call."""
        prompts = [str(item["prompt"]) if isinstance(item.get("prompt"), str) else "" for item in items]
        kept: list[tuple[Any, str]] = []
        dropped = 0
        forged: str | None = None
        for index, (item, prompt) in enumerate(zip(items, prompts, strict=True)):
            if _poisoned(prompt, config) or self.faults.drop_item(config.drop_item_rate):
                dropped += 1
                continue
            answer = answer_for(prompt)
            if config.leak_marker and config.leak_marker in prompt:
                others = [p for other, p in enumerate(prompts) if other != index]
                answer += " Other items: " + " | ".join(others)
            if forged is None and config.forge_marker and config.forge_marker in prompt:
                forged = answer
            kept.append((item["id"], answer))
        if forged is not None:
            kept = [(item_id, forged) for item_id, _ in kept]
        return kept, dropped


def _poisoned(prompt: str, config: SimulatorSettings) -> bool:
    return bool(config.poison_marker) and config.poison_marker in prompt


def _blocked(request: GenerateRequest, items: list[dict[str, Any]] | None, config: SimulatorSettings) -> bool:
    """True when ``block_marker`` is anywhere in the request's text, a packed item's decoded
    prompt and context included (the item list escapes some characters)."""
    marker = config.block_marker
    if not marker:
        return False
    texts = [*request.texts, *(text for item in items or [] for text in _strings(item))]
    return any(marker in text for text in texts)


def _strings(value: Any) -> list[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _within(text: str, max_output_tokens: int | None) -> tuple[str, str]:
    """The text cut at ``max_output_tokens`` (about 4 characters a token), and the finish reason."""
    if max_output_tokens is None or estimate_tokens(text) <= max_output_tokens:
        return text, "STOP"
    return text[: max_output_tokens * CHARS_PER_TOKEN], "MAX_TOKENS"
