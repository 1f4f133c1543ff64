"""HTTP surface of the simulated Gemini Batch API and Files API (Gemini Developer API shape).

Routes, as the unmodified google-genai SDK calls them (``batches.py``, ``files.py``,
``_api_client.upload_file``):

- ``POST /{v}/models/{model}:batchGenerateContent``: create a job (inline requests or a file);
- ``GET /{v}/batches``, ``GET|DELETE /{v}/batches/{id}``, ``POST /{v}/batches/{id}:cancel``;
- ``POST /upload/{v}/files``: Gemini's resumable upload (``X-Goog-Upload-Command: start``,
  then ``upload``/``upload, finalize`` chunks to the ``X-Goog-Upload-URL`` it returns);
- ``GET /{v}/files``, ``GET|DELETE /{v}/files/{id}``, ``GET /{v}/files/{id}:download?alt=media``.

A job ends lazily: whoever looks at it after its turnaround (get, list, cancel) ends it with the
``batch_outcome`` configured then, composing its answers (``batch_answers``) and, for file
input, writing its results file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from batching.simulator.batch_answers import (
    BatchInputError,
    answer_items,
    file_items,
    inline_items,
    result_lines,
)
from batching.simulator.batch_jobs import BatchConflict, BatchJob, BatchStore, job_body
from batching.simulator.core import Simulator
from batching.simulator.files_store import FileStore, UploadError
from batching.simulator.replies import error_body

#: Jobs a list page holds when the client asks for no size, and at most.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: Upload chunk size the server advertises (the SDK sends 8 MiB chunks regardless).
UPLOAD_GRANULARITY = 8 * 1024 * 1024
VERSION = "{version:v1[a-z0-9]*}"


@dataclass
class BatchState:
    """The Batch and Files APIs' state beside the simulator whose configuration they follow."""

    simulator: Simulator
    jobs: BatchStore = field(default_factory=BatchStore)
    files: FileStore = field(default_factory=FileStore)

    def reset(self) -> None:
        """Forget every job and file (``POST /_sim/reset``; the counters live in ``Stats``)."""
        self.jobs.clear()
        self.files.clear()

    def settle(self, job: BatchJob, now: float, wall: float) -> None:
        """End ``job`` if its turnaround is over, with the outcome configured now."""
        if not job.due(now):
            return
        config = self.simulator.config
        if config.batch_outcome != "succeeded":
            self.jobs.finish(job, config.batch_outcome, wall)
            return
        results = answer_items(config, job.model, job.items)
        stats = self.simulator.stats
        for result in results:
            usage = (result.get("response") or {}).get("usageMetadata") or {}
            stats.batch_prompt_tokens += int(usage.get("promptTokenCount", 0))
            stats.batch_output_tokens += int(usage.get("candidatesTokenCount", 0))
            stats.batch_cached_tokens += int(usage.get("cachedContentTokenCount", 0))
        if job.source_file is None:
            self.jobs.finish(job, "succeeded", wall, results)
            return
        output = self.files.generate(
            f"files/batch-{job.id}", "application/jsonl", result_lines(results), wall
        )
        self.jobs.finish(job, "succeeded", wall, results, output.name)


BATCH_KEY = web.AppKey("batch_state", BatchState)


def add_batch_routes(app: web.Application, simulator: Simulator) -> None:
    """Register the Batch and Files API routes; call it before the generic ``models/{target}``
    route, which would otherwise take ``:batchGenerateContent``."""
    app[BATCH_KEY] = BatchState(simulator)
    router = app.router
    router.add_post(rf"/{VERSION}/models/{{model:[^{{}}/:]+}}:batchGenerateContent", _create)
    router.add_get(rf"/{VERSION}/batches", _list)
    router.add_get(rf"/{VERSION}/batches/{{job}}", _get)
    router.add_post(rf"/{VERSION}/batches/{{job}}", _cancel)
    router.add_delete(rf"/{VERSION}/batches/{{job}}", _delete)
    router.add_post(rf"/upload/{VERSION}/files", _upload)
    router.add_get(rf"/{VERSION}/files", _list_files)
    router.add_get(rf"/{VERSION}/files/{{file}}", _get_file)
    router.add_delete(rf"/{VERSION}/files/{{file}}", _delete_file)


def reset_batches(app: web.Application) -> None:
    """Forget the jobs and files of ``app`` (its ``/_sim/reset``)."""
    app[BATCH_KEY].reset()


# --- batches -----------------------------------------------------------------------------


async def _create(request: web.Request) -> web.Response:
    """Create a job from inline requests or an uploaded JSONL file; pending at first."""
    state = request.app[BATCH_KEY]
    sim = state.simulator
    model = request.match_info["model"]
    try:
        try:
            body = await request.json()
        except ValueError as exc:
            raise BatchInputError(f"Invalid JSON payload received. {exc}") from None
        items, display_name, file_name = inline_items(body)
        if file_name is not None:
            stored = state.files.get(file_name)
            if stored is None:
                return _error(404, "NOT_FOUND", f"File {file_name} does not exist.")
            items, file_name = file_items(bytes(stored.data)), stored.name
            if not items:
                raise BatchInputError(f"File {file_name} holds no requests.")
    except BatchInputError as exc:
        sim.stats.bad_requests += 1
        return _error(400, "INVALID_ARGUMENT", str(exc))
    now, wall = time.monotonic(), time.time()
    job = state.jobs.create(
        model,
        items,
        now,
        wall,
        sim.config.batch_turnaround_s,
        display_name=display_name,
        source_file=file_name,
    )
    sim.stats.batch_jobs += 1
    sim.stats.batch_items += len(items)
    state.settle(job, now, wall)  # a zero turnaround ends the job at once
    return web.json_response(job_body(job, now))


async def _get(request: web.Request) -> web.Response:
    """Show one job, ending it first if its turnaround is over."""
    state = request.app[BATCH_KEY]
    job = state.jobs.get(request.match_info["job"])
    if job is None:
        return _not_found("batches", request.match_info["job"])
    now = time.monotonic()
    state.settle(job, now, time.time())
    return web.json_response(job_body(job, now))


async def _list(request: web.Request) -> web.Response:
    """List jobs newest first, a page at a time (``pageSize``, ``pageToken``)."""
    state = request.app[BATCH_KEY]
    try:
        start, size = _page(request)
    except ValueError as exc:
        return _error(400, "INVALID_ARGUMENT", str(exc))
    now, wall = time.monotonic(), time.time()
    jobs = state.jobs.jobs()
    page = jobs[start : start + size]
    for job in page:
        state.settle(job, now, wall)
    body: dict[str, Any] = {"operations": [job_body(job, now) for job in page]}
    if start + size < len(jobs):
        body["nextPageToken"] = str(start + size)
    return web.json_response(body)


async def _cancel(request: web.Request) -> web.Response:
    """``batches/{id}:cancel``: cancel a job that has not ended; answers an empty object."""
    state = request.app[BATCH_KEY]
    name, _, method = request.match_info["job"].partition(":")
    if method != "cancel":
        return _error(404, "NOT_FOUND", f"Method {request.path} is not found (simulated).")
    job = state.jobs.get(name)
    if job is None:
        return _not_found("batches", name)
    now, wall = time.monotonic(), time.time()
    try:
        state.jobs.cancel(job, now, wall)
    except BatchConflict as exc:
        state.settle(job, now, wall)
        return _error(400, "FAILED_PRECONDITION", str(exc))
    return web.json_response({})


async def _delete(request: web.Request) -> web.Response:
    """Forget a job, whatever its state; answers an empty object."""
    name = request.match_info["job"]
    if not request.app[BATCH_KEY].jobs.delete(name):
        return _not_found("batches", name)
    return web.json_response({})


# --- files -------------------------------------------------------------------------------


async def _upload(request: web.Request) -> web.Response:
    """Gemini's resumable upload: ``start`` opens a session and returns its URL (this path with
    ``upload_id``), then chunks arrive at their offsets until ``finalize`` returns the File."""
    files = request.app[BATCH_KEY].files
    upload_id = request.query.get("upload_id")
    command = request.headers.get("X-Goog-Upload-Command", "").lower()
    if upload_id is None:
        if "start" not in command:
            return _error(400, "INVALID_ARGUMENT", "Only resumable uploads are simulated: start one first.")
        return await _start_upload(request, files)
    try:
        offset = int(request.headers.get("X-Goog-Upload-Offset", "0"))
        chunk = await request.read()
        stored = files.append(upload_id, offset, chunk, finalize="finalize" in command)
    except (ValueError, UploadError) as exc:
        response = _error(400, "INVALID_ARGUMENT", str(exc))
        response.headers["X-Goog-Upload-Status"] = "final"  # else the SDK retries the chunk
        return response
    if not stored.complete:
        return web.Response(headers={"X-Goog-Upload-Status": "active"})
    headers = {"X-Goog-Upload-Status": "final"}
    return web.json_response({"file": stored.body(_base_url(request))}, headers=headers)


async def _start_upload(request: web.Request, files: FileStore) -> web.Response:
    """Open an upload from ``{"file": {...}}`` and the ``X-Goog-Upload-Header-*`` headers."""
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        body = {}
    meta = body.get("file") if isinstance(body, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    # The SDK writes the File's fields in snake case (``_common.convert_to_dict``), REST in camel.
    meta = {_camel(key): value for key, value in meta.items()}
    mime = meta.get("mimeType") or request.headers.get("X-Goog-Upload-Header-Content-Type")
    if not isinstance(mime, str) or not mime:
        return _error(400, "INVALID_ARGUMENT", "The file's mime type is not specified.")
    declared = meta.get("sizeBytes") or request.headers.get("X-Goog-Upload-Header-Content-Length", "0")
    try:
        size = int(str(declared))
    except ValueError:
        return _error(400, "INVALID_ARGUMENT", "The file's size is not a number.")
    name, display = meta.get("name"), meta.get("displayName")
    if name is not None and files.get(str(name)) is not None:
        return _error(409, "ALREADY_EXISTS", f"File {name} already exists.")
    upload_id, _ = files.start_upload(
        mime,
        size,
        time.time(),
        name=str(name) if name is not None else None,
        display_name=str(display) if display is not None else None,
    )
    version = request.match_info["version"]
    url = f"{_base_url(request)}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
    headers = {
        "X-Goog-Upload-URL": url,
        "X-Goog-Upload-Status": "active",
        "X-Goog-Upload-Chunk-Granularity": str(UPLOAD_GRANULARITY),
    }
    return web.Response(headers=headers)


async def _get_file(request: web.Request) -> web.StreamResponse:
    """``files/{id}``: the File; ``files/{id}:download?alt=media``: its bytes."""
    name, _, method = request.match_info["file"].partition(":")
    stored = request.app[BATCH_KEY].files.get(name)
    if method not in ("", "download"):
        return _error(404, "NOT_FOUND", f"Method {request.path} is not found (simulated).")
    if stored is None:
        return _not_found("files", name)
    if method == "download":
        return web.Response(body=bytes(stored.data), content_type=stored.mime_type)
    return web.json_response(stored.body(_base_url(request)))


async def _list_files(request: web.Request) -> web.Response:
    """List files newest first, a page at a time."""
    try:
        start, size = _page(request)
    except ValueError as exc:
        return _error(400, "INVALID_ARGUMENT", str(exc))
    files = request.app[BATCH_KEY].files.files()
    base = _base_url(request)
    body: dict[str, Any] = {"files": [stored.body(base) for stored in files[start : start + size]]}
    if start + size < len(files):
        body["nextPageToken"] = str(start + size)
    return web.json_response(body)


async def _delete_file(request: web.Request) -> web.Response:
    """Forget a file; answers an empty object."""
    name = request.match_info["file"]
    if not request.app[BATCH_KEY].files.delete(name):
        return _not_found("files", name)
    return web.json_response({})


# --- helpers -----------------------------------------------------------------------------


def _page(request: web.Request) -> tuple[int, int]:
    """The first index and the size of the page asked for; ValueError names a bad parameter."""
    try:
        size = int(request.query.get("pageSize", DEFAULT_PAGE_SIZE))
    except ValueError:
        raise ValueError("pageSize must be an integer") from None
    token = request.query.get("pageToken", "") or "0"
    if not token.isdigit():
        raise ValueError(f"Invalid pageToken {token!r}.")
    return int(token), min(max(size, 1) if size > 0 else DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _not_found(collection: str, name: str) -> web.Response:
    name = name if name.startswith(f"{collection}/") else f"{collection}/{name}"
    return _error(404, "NOT_FOUND", f"{name} is not found (simulated).")


def _error(code: int, status: str, message: str) -> web.Response:
    return web.json_response(error_body(code, status, message), status=code)
