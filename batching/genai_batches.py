"""Gemini's Batch API through a worker's SDK client, for the bulk lane (``batching.bulk_client``).

A job's calls travel inline (``InlinedRequest``, each keyed by its position) while they fit in
``inline_max_bytes`` (Gemini takes inline requests up to 20 MB); beyond that they are written
as a JSONL file (``{"key", "request"}`` per line, the request in the wire shape the SDK itself
sends), uploaded with ``client.files.upload`` and named as the job's source. Results come back
as inline responses or as a JSONL file downloaded with ``client.files.download``, read back by
key either way.
"""

from __future__ import annotations

import io
import json
from typing import Any

from google.genai import _common as sdk_common
from google.genai import batches as sdk_batches
from google.genai import types

from batching.bulk_client import SUCCEEDED, BatchStatus
from batching.genai_client import (
    GenaiModelClient,
    _calls_of,
    _config,
    _contents,
    _enum_value,
    _reply,
    _text_of,
    _translated_errors,
)
from batching.types import ModelCall, ModelCallError, ModelReply

#: Gemini's limit on a job's inline requests.
INLINE_MAX_BYTES = 20 * 1024 * 1024


class GenaiBatchBackend:
    """Creates and reads Batch API jobs with the SDK client a worker's engine already holds."""

    def __init__(self, client: GenaiModelClient, inline_max_bytes: int = INLINE_MAX_BYTES) -> None:
        self._client = client
        self._inline_max_bytes = inline_max_bytes

    async def create(self, model: str, calls: list[ModelCall], display_name: str) -> str:
        requests = [
            types.InlinedRequest(contents=_contents(call), config=_config(call), metadata={"key": str(n)})
            for n, call in enumerate(calls)
        ]
        sdk = self._client._client
        src: Any = requests
        async with _translated_errors():
            if sum(len(r.model_dump_json(exclude_none=True)) for r in requests) > self._inline_max_bytes:
                lines = (
                    json.dumps({"key": str(n), "request": _wire(sdk, r)}, separators=(",", ":"))
                    for n, r in enumerate(requests)
                )
                data = io.BytesIO(("\n".join(lines) + "\n").encode())
                config = types.UploadFileConfig(mime_type="jsonl", display_name=display_name)
                uploaded = await sdk.aio.files.upload(file=data, config=config)
                src = uploaded.name
            job = await sdk.aio.batches.create(
                model=model, src=src, config=types.CreateBatchJobConfig(display_name=display_name)
            )
        return job.name or ""

    async def get(self, name: str) -> BatchStatus:
        sdk = self._client._client
        async with _translated_errors():
            job = await sdk.aio.batches.get(name=name)
            state = _enum_value(job.state) if job.state is not None else "JOB_STATE_UNSPECIFIED"
            if state != SUCCEEDED or job.dest is None:
                return BatchStatus(state)
            if job.dest.inlined_responses is not None:
                responses = job.dest.inlined_responses
                by_key = {str((r.metadata or {}).get("key", n)): r for n, r in enumerate(responses)}
            elif job.dest.file_name:
                data = await sdk.aio.files.download(file=job.dest.file_name)
                by_key = _file_responses(data or b"")
            else:
                return BatchStatus(state)
        return BatchStatus(state, {key: _batch_reply(item) for key, item in by_key.items()})


def _wire(sdk: Any, request: types.InlinedRequest) -> dict[str, Any]:
    """A request as the SDK writes it on the wire (its own converter for inline requests)."""
    converted = sdk_batches._InlinedRequest_to_mldev(sdk._api_client, request)
    # As the SDK prepares a body before sending it: its own objects turned into JSON values.
    wire: dict[str, Any] = sdk_common.encode_unserializable_types(sdk_common.convert_to_dict(converted))
    return dict(wire["request"])


def _file_responses(data: bytes) -> dict[str, types.InlinedResponse]:
    """A results file's lines (``{"key", "response"}`` or ``{"key", "error"}``) by key."""
    found: dict[str, types.InlinedResponse] = {}
    for line in data.decode().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        found[str(entry.get("key"))] = types.InlinedResponse(
            response=types.GenerateContentResponse.model_validate(entry["response"])
            if "response" in entry
            else None,
            error=types.JobError.model_validate(entry["error"]) if "error" in entry else None,
        )
    return found


def _batch_reply(item: types.InlinedResponse) -> ModelReply | ModelCallError:
    """One request's answer in a job, or why it has none (retryable unless Gemini found the
    request malformed: google.rpc code 3)."""
    if item.error is not None or item.response is None:
        code = item.error.code if item.error is not None else None
        message = (item.error.message if item.error is not None else None) or "no response"
        if code == 3:
            return ModelCallError("model_rejected_request", f"Gemini refused the request: {message}")
        return ModelCallError(
            "bulk_item_failed", f"the batch job could not answer it: {message}", retryable=True
        )
    try:
        return _reply(_text_of(item.response), item.response, calls=_calls_of(item.response))
    except ModelCallError as exc:
        return exc
