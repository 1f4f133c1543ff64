"""What a Batch API job reads and answers: its input requests, and each one's response or error.

Each request is answered exactly as ``generateContent`` answers it (the same parsing, the same
``Simulator.prepare`` composition, the same response body), but by a private ``Simulator`` with
no quotas and no random faults: batch requests are the Batch API's own, outside the interactive
RPM/TPM/RPD quotas, slots and stats. A request ``generateContent`` would refuse (malformed,
poisoned) gets its own ``error`` while the others are answered: a job succeeds partially.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from batching.simulator.batch_jobs import BatchItem, rpc_status
from batching.simulator.core import CallFailed, Simulator
from batching.simulator.protocol import BadRequest, check_thought_signatures, parse_generate_request
from batching.simulator.replies import blocked_body, response_body
from batching.simulator.settings import SimulatorSettings


class BatchInputError(ValueError):
    """A batch request body Gemini would refuse as a whole (400 INVALID_ARGUMENT)."""


def inline_items(body: Any) -> tuple[list[BatchItem], str | None, str | None]:
    """The items, display name and input file of a ``batchGenerateContent`` body
    (``{"batch": {"displayName", "inputConfig": {"requests": {"requests": [...]}} or
    {"fileName"}}}``, as the SDK's ``_CreateBatchJobParameters_to_mldev`` writes it); the items
    are empty for file input, which the caller reads with ``file_items``."""
    batch = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(batch, dict):
        raise BatchInputError("* BatchGenerateContentRequest.batch: batch is not specified")
    display = batch.get("displayName")
    display_name = display if isinstance(display, str) else None
    config = batch.get("inputConfig")
    if not isinstance(config, dict):
        raise BatchInputError("* GenerateContentBatch.input_config: input_config is not specified")
    file_name = config.get("fileName")
    if isinstance(file_name, str) and file_name:
        return [], display_name, file_name
    wrapper = config.get("requests")
    requests = wrapper.get("requests") if isinstance(wrapper, dict) else None
    if not isinstance(requests, list) or not requests:
        raise BatchInputError("* InputConfig: one of requests or file_name must be given, with requests")
    items = []
    for entry in requests:
        entry = entry if isinstance(entry, dict) else {}
        metadata = entry.get("metadata")
        items.append(
            BatchItem(
                key=None,
                metadata=metadata if isinstance(metadata, dict) else None,
                request=entry.get("request"),
            )
        )
    return items, display_name, None


def file_items(data: bytes) -> list[BatchItem]:
    """The items of an input JSONL file: one ``{"key", "request"}`` object a line (blank lines
    skipped); a line that is not one becomes an item whose error says why."""
    items = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            items.append(BatchItem(key=None, metadata=None, request=None, problem=f"line {number}: {exc}"))
            continue
        if not isinstance(entry, dict) or "request" not in entry:
            problem = f'line {number}: not a {{"key", "request"}} object'
            items.append(BatchItem(key=None, metadata=None, request=None, problem=problem))
            continue
        key = entry.get("key")
        items.append(
            BatchItem(key=None if key is None else str(key), metadata=None, request=entry["request"])
        )
    return items


def answer_items(config: SimulatorSettings, model: str, items: list[BatchItem]) -> list[dict[str, Any]]:
    """Each item's outcome in order: ``{"response": GenerateContentResponse}`` or
    ``{"error": google.rpc.Status}``, with the item's ``metadata`` (inline) or ``key`` (file)."""
    private = dataclasses.replace(config, rpm=0, tpm=0, rpd=0, error_rate=0.0, max_concurrent=0)
    composer = Simulator(private)
    results = []
    for item in items:
        result = _answer(composer, model, item)
        if item.key is not None:
            result = {"key": item.key, **result}
        if item.metadata is not None:
            result["metadata"] = item.metadata
        results.append(result)
    return results


def result_lines(results: list[dict[str, Any]]) -> bytes:
    """The output JSONL file of a file-input job: one result a line, in input order."""
    return "".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results).encode("utf-8")


def _answer(composer: Simulator, model: str, item: BatchItem) -> dict[str, Any]:
    """One item's ``response`` or ``error``, as ``generateContent`` would have answered it."""
    if item.problem is not None:
        return {"error": rpc_status("INVALID_ARGUMENT", f"Invalid batch input {item.problem}.")}
    try:
        call = parse_generate_request(item.request)
        check_thought_signatures(model, call)
    except BadRequest as exc:
        return {"error": rpc_status("INVALID_ARGUMENT", str(exc))}
    try:
        answer = composer.prepare(call, model=model)
    except CallFailed as failed:
        return {"error": rpc_status(failed.error.status, failed.error.message)}
    response_id = uuid.uuid4().hex[:24]
    if answer.block_reason is not None:
        return {"response": blocked_body(model, answer.prompt_tokens, response_id, answer.block_reason)}
    costs = (answer.prompt_tokens, answer.output_tokens, response_id, answer.finish)
    body = response_body(
        model, answer.text, *costs, function_call=answer.function_call, cached_tokens=answer.cached_tokens
    )
    return {"response": body}
