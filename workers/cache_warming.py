"""Pre-compute answers to common queries into one tenant's response cache, at a bounded rate.

Queries are answered in chunks straight through the engine (packing applies), never
through the live queue, so warming does not compete with clients for queue slots; the
rate bound keeps it from eating the model quota either.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batchgate.response_cache import ResponseCache, cache_key, is_time_sensitive
from batchgate.settings import Settings
from batching.types import COMPLETE, InferenceRequest, InferenceResult

RunEngine = Callable[[list[InferenceRequest]], list[InferenceResult]]


@dataclass
class WarmReport:
    """What a warming run did with each query."""

    queries: int = 0
    cached: int = 0
    already_cached: int = 0
    time_sensitive: int = 0
    invalid: int = 0
    failed: int = 0


def load_queries(path: Path) -> list[dict[str, Any]]:
    """Read a JSON array or JSONL file of task requests (objects with at least ``prompt``)."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        data = json.loads(stripped)
    else:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(data, list) or not all(isinstance(q, dict) for q in data):
        raise ValueError(f"{path}: expected a JSON array of objects or one object per line")
    return data


def warm(
    queries: list[dict[str, Any]],
    tenant: str,
    settings: Settings,
    cache: ResponseCache,
    run_engine: RunEngine,
    rate_per_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> WarmReport:
    """Answer the uncached, cacheable queries at no more than ``rate_per_s`` and cache the
    complete successes for ``tenant`` (only its keys are answered from them)."""
    report = WarmReport(queries=len(queries))
    pending: list[tuple[str, InferenceRequest]] = []
    for query in queries:
        request = _request(query, settings, tenant)
        if request is None:
            report.invalid += 1
            continue
        context = json.dumps(request.context, ensure_ascii=False) if request.context else ""
        if is_time_sensitive((request.prompt, request.system or "", context), settings.edge.bypass_words):
            report.time_sensitive += 1
            continue
        digest = cache_key(_message(request))
        if cache.get(tenant, digest) is not None:
            report.already_cached += 1
            continue
        pending.append((cache.record_key(tenant, digest), request))

    chunk = max(1, min(settings.consumer.batch_max_size, int(rate_per_s) or 1))
    started = clock()
    for done in range(0, len(pending), chunk):
        # Never ahead of the rate: item n may start no earlier than n / rate seconds in.
        ahead = done / rate_per_s - (clock() - started)
        if ahead > 0:
            sleep(ahead)
        part = pending[done : done + chunk]
        results = run_engine([request for _, request in part])
        entries = []
        for (key, _), result in zip(part, results, strict=True):
            if result.ok and result.finish_reason == COMPLETE:
                usage = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
                answer = {"text": result.text, "model": result.model, "usage": usage}
                entries.append((key, {**answer, "finish_reason": result.finish_reason}))
            else:
                report.failed += 1
        cache.put_many(entries)
        report.cached += len(entries)
    return report


def _message(request: InferenceRequest) -> dict[str, Any]:
    """The request as the API would send it to a worker: what its cache digest is taken over."""
    return {
        "model": request.model,
        "system": request.system,
        "generation": request.generation,
        "prompt": request.prompt,
        "context": request.context,
    }


def _request(query: dict[str, Any], settings: Settings, tenant: str) -> InferenceRequest | None:
    prompt = query.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return None
    generation = query.get("generation") or {}
    context = query.get("context")
    system = query.get("system")
    if not isinstance(generation, dict) or (context is not None and not isinstance(context, dict)):
        return None
    if system is not None and not isinstance(system, str):
        return None
    return InferenceRequest(
        id=secrets.token_hex(8),
        prompt=prompt,
        model=str(query.get("model") or settings.gemini.model),
        system=system,
        context=context,
        generation={k: v for k, v in generation.items() if v is not None},
        tenant=tenant,
    )


def report_dict(report: WarmReport) -> dict[str, int]:
    return asdict(report)
