"""ModelClient backed by the official google-genai SDK (with ``batching.genai_batches``, the only
modules that import it)."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from google import genai
from google.genai import errors, types

from batching.daily_quota import daily_quota_error
from batching.types import ModelCall, ModelCallError, ModelReply, Part

#: Models that require a function call sent back to carry its thought signature.
SIGNING_MODELS = ("gemini-3",)
#: What Gemini 3's documentation gives a function call that has no signature of the model's.
UNSIGNED_CALL_SIGNATURE = "skip_thought_signature_validator"

#: aiohttp's read buffer, as the SDK sizes it for its own session (a streamed chunk can be large).
READ_BUFFER_BYTES = 2**22

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)s\s*$")


class GenaiModelClient:
    """Calls ``generateContent`` through one pooled async SDK client.

    ``base_url`` points the SDK at a Gemini-compatible server (the simulator); None means
    Google's own endpoint. SDK retries stay off: the engine retries, honouring RetryInfo.

    The SDK is given its aiohttp session (``HttpOptions.aiohttp_client``, the SDK's own option)
    because the one it builds trusts the environment: each request then looks for a
    ``~/.netrc`` on a thread of the default executor, a thread handoff per call on the
    worker's busiest thread. Ours trusts the environment only when a proxy is configured
    (``HTTPS_PROXY`` and the like), the one setting an operator needs from it. Both are made
    on first use, on the caller's event loop.
    """

    def __init__(self, api_key: str, base_url: str | None, timeout_s: float) -> None:
        self._api_key = api_key or "batchgate-simulator"
        self._base_url = base_url
        self._timeout_ms = int(timeout_s * 1000)
        self._sdk: genai.Client | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def _client(self) -> genai.Client:
        if self._sdk is None:
            self._session = _QuietSession(
                connector=_QuietConnector(limit=0),
                trust_env=proxy_configured(os.environ),
                read_bufsize=READ_BUFFER_BYTES,
            )
            options = types.HttpOptions(
                base_url=self._base_url, timeout=self._timeout_ms, aiohttp_client=self._session
            )
            self._sdk = genai.Client(api_key=self._api_key, http_options=options)
        return self._sdk

    async def generate(self, call: ModelCall) -> ModelReply:
        """Send ``call``; translate every failure into a ``ModelCallError``."""
        async with _translated_errors():
            response = await self._client.aio.models.generate_content(
                model=call.model, contents=_contents(call), config=_config(call)
            )
        return _reply(_text_of(response), response, calls=_calls_of(response))

    async def generate_stream(self, call: ModelCall, on_text: Callable[[str], None]) -> ModelReply:
        """Send ``call`` as ``streamGenerateContent``, reporting each chunk's text as it arrives."""
        chunks: list[str] = []
        calls: list[dict[str, Any]] = []
        last: types.GenerateContentResponse | None = None
        feedback: types.GenerateContentResponsePromptFeedback | None = None
        async with _translated_errors():
            stream = await self._client.aio.models.generate_content_stream(
                model=call.model, contents=_contents(call), config=_config(call)
            )
            async for chunk in stream:
                last = chunk
                feedback = feedback or chunk.prompt_feedback  # Gemini sends it in the first chunk
                calls.extend(_calls_of(chunk))
                text = _text_of(chunk)
                if text:
                    chunks.append(text)
                    on_text(text)
        return _reply("".join(chunks) if chunks else None, last, feedback, tuple(calls))

    async def aclose(self) -> None:
        """Close the pooled HTTP connections."""
        if self._sdk is not None:
            await self._sdk.aio.aclose()
        if self._session is not None and not self._session.closed:
            await self._session.close()


class _QuietSession(aiohttp.ClientSession):
    """``aclose`` closes it. An engine dropped without that (a worker's lives as long as its
    process; tests drop theirs) leaves its sockets to the garbage collector, as the SDK's own
    session does, instead of warning about it."""

    def __del__(self, _warnings: Any = None) -> None:
        return


class _QuietConnector(aiohttp.TCPConnector):
    """The connector of a ``_QuietSession``: closed with it, quiet when collected unclosed."""

    def __del__(self, _warnings: Any = None) -> None:
        return


def proxy_configured(environ: Mapping[str, str]) -> bool:
    """Whether the environment names an HTTP(S) proxy (aiohttp's ``trust_env`` reads it then)."""
    names = ("https_proxy", "http_proxy", "all_proxy")
    return any(environ.get(name) or environ.get(name.upper()) for name in names)


@asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    """Turn the SDK's and the transport's exceptions into ``ModelCallError``."""
    try:
        yield
    except errors.APIError as exc:
        raise _api_error(exc) from exc
    except TimeoutError as exc:
        raise ModelCallError("model_timeout", "Gemini call timed out", retryable=True) from exc
    except OSError as exc:
        raise ModelCallError("model_unreachable", f"cannot reach Gemini: {exc}", retryable=True) from exc
    except Exception as exc:
        if _is_transport_error(exc):
            raise ModelCallError("model_unreachable", f"{type(exc).__name__}: {exc}", retryable=True) from exc
        raise


def _contents(call: ModelCall) -> list[types.Content]:
    """Prior turns, then the user turn (its inline data and function responses before its text)."""
    signing = call.model.startswith(SIGNING_MODELS)
    contents = [
        types.Content(role=role, parts=[_part(part, signing) for part in parts])
        for role, parts in call.history
    ]
    parts = [_part(part) for part in call.extra_parts]
    parts.extend(types.Part(text=text) for text in call.parts)
    contents.append(types.Content(role="user", parts=parts))
    return contents


def _part(part: Part, signing: bool = False) -> types.Part:
    """An SDK part for one of ours; inline data travels as base64 text and the SDK wants bytes.
    ``signing``: a function call without the model's thought signature (made by a packed call,
    or sent back by a client that dropped it) gets the one Gemini 3 documents for such calls."""
    blob = part.get("inline_data")
    if isinstance(blob, dict):
        data = base64.b64decode(str(blob.get("data", "")), validate=True)
        return types.Part(inline_data=types.Blob(mime_type=blob.get("mime_type"), data=data))
    if signing and "function_call" in part and not part.get("thought_signature"):
        part = {**part, "thought_signature": UNSIGNED_CALL_SIGNATURE}
    return types.Part.model_validate(part)


def _reply(
    text: str | None,
    response: types.GenerateContentResponse | None,
    feedback: types.GenerateContentResponsePromptFeedback | None = None,
    calls: tuple[dict[str, Any], ...] = (),
) -> ModelReply:
    if text is None and not calls:
        raise _no_text(response, feedback or (response.prompt_feedback if response is not None else None))
    usage = response.usage_metadata if response is not None else None
    http = response.sdk_http_response if response is not None else None
    return ModelReply(
        text=text or "",
        input_tokens=(usage.prompt_token_count or 0) if usage else 0,
        output_tokens=(usage.candidates_token_count or 0) if usage else 0,
        cached_tokens=(usage.cached_content_token_count or 0) if usage else 0,
        finish_reason=_candidate_finish(response),
        function_calls=calls,
        server_s=server_time_s((http.headers or {}) if http is not None else {}),
    )


def server_time_s(headers: Mapping[str, str]) -> float | None:
    """The server's own time from a W3C ``Server-Timing`` header (``name;dur=<ms>``, the
    durations of its entries added up), in seconds; None without one. Google's front ends
    send one on many APIs; the simulator always does."""
    value = next((v for k, v in headers.items() if k.lower() == "server-timing"), None)
    if not value:
        return None
    total, found = 0.0, False
    for param in (p.strip() for entry in value.split(",") for p in entry.split(";")[1:]):
        name, _, number = param.partition("=")
        if name.strip().lower() == "dur":
            try:
                total += float(number.strip().strip('"'))
                found = True
            except ValueError:
                continue
    return total / 1000 if found else None


def _calls_of(response: types.GenerateContentResponse) -> tuple[dict[str, Any], ...]:
    """The function calls of the first candidate, as ``{"name", "args", "id"?}``."""
    if not response.candidates or response.candidates[0].content is None:
        return ()
    calls = []
    for part in response.candidates[0].content.parts or []:
        call = part.function_call
        if call is not None and call.name:
            entry: dict[str, Any] = {"name": call.name, "args": dict(call.args or {})}
            if call.id:
                entry["id"] = call.id
            if part.thought_signature:  # Gemini 3 wants it back with the call
                entry["thought_signature"] = base64.b64encode(part.thought_signature).decode()
            calls.append(entry)
    return tuple(calls)


def _candidate_finish(response: types.GenerateContentResponse | None) -> str | None:
    """The first candidate's ``finishReason`` as Gemini spells it (``STOP``, ``MAX_TOKENS``...)."""
    if response is None or not response.candidates or response.candidates[0].finish_reason is None:
        return None
    return _enum_value(response.candidates[0].finish_reason)


def _config(call: ModelCall) -> types.GenerateContentConfig:
    fields: dict[str, Any] = dict(call.generation)
    # Function calls are answered to the client, never run here; turning automatic function
    # calling off also silences its per-call INFO log line.
    fields["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(disable=True)
    if call.system:
        fields["system_instruction"] = call.system
    if call.response_schema is not None or call.response_json_schema is not None or call.json_output:
        fields["response_mime_type"] = "application/json"
    if call.response_schema is not None:
        fields["response_schema"] = call.response_schema
    if call.response_json_schema is not None:
        fields["response_json_schema"] = call.response_json_schema
    tools = call.tools
    if tools is not None:
        declarations = [_declaration(function) for function in tools.functions]
        fields["tools"] = [types.Tool(function_declarations=declarations)]
        fields["tool_config"] = types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode(tools.mode),
                allowed_function_names=list(tools.allowed) or None,
            )
        )
    return types.GenerateContentConfig(**fields)


def _declaration(function: dict[str, Any]) -> types.FunctionDeclaration:
    """A function declaration; its parameters are JSON Schema (``parametersJsonSchema``)."""
    return types.FunctionDeclaration(
        name=function["name"],
        description=function.get("description"),
        parameters_json_schema=function.get("parameters"),
    )


def _text_of(response: types.GenerateContentResponse) -> str | None:
    """The concatenated text parts of the first candidate (no SDK warning on other parts)."""
    if not response.candidates:
        return None
    content = response.candidates[0].content
    if content is None or not content.parts:
        return None
    texts = [part.text for part in content.parts if part.text is not None and not part.thought]
    return "".join(texts) if texts else None


def _no_text(
    response: types.GenerateContentResponse | None,
    feedback: types.GenerateContentResponsePromptFeedback | None,
) -> ModelCallError:
    """Why an answer has no text: a blocked prompt (``model_blocked``: what the call carries is
    refused, so trying it again cannot help) or an empty candidate (``model_empty_answer``)."""
    if feedback is not None and feedback.block_reason is not None:
        reason = _enum_value(feedback.block_reason)
        return ModelCallError("model_blocked", f"Gemini blocked the prompt (block reason {reason})")
    reason = (_candidate_finish(response) or "unknown") if response is not None else "no response"
    return ModelCallError("model_empty_answer", f"Gemini returned no text (finish reason {reason})")


def _enum_value(value: object) -> str:
    """An SDK enum as Gemini spells it on the wire (``SAFETY``, not ``BlockedReason.SAFETY``)."""
    return str(getattr(value, "value", value))


def _api_error(exc: errors.APIError) -> ModelCallError:
    status = int(exc.code) if exc.code else None
    code = {
        429: "model_rate_limited",
        408: "model_timeout",
        400: "model_rejected_request",
        401: "model_auth_failed",
        403: "model_auth_failed",
        404: "model_not_found",
    }.get(status or 0, "model_unavailable" if (status or 500) >= 500 else "model_rejected_request")
    message = f"{exc.status or ''} {exc.message or ''}".strip() or str(exc)
    retry_after_s = _retry_delay(exc.details)
    daily = daily_quota_error(exc.details, retry_after_s) if status == 429 else None
    return daily or ModelCallError(
        code, message, status=status, retryable=status in RETRYABLE_STATUSES, retry_after_s=retry_after_s
    )


def _retry_delay(details: Any) -> float | None:
    """Read ``google.rpc.RetryInfo.retryDelay`` (e.g. ``"1.5s"``) from an error body."""
    error = details.get("error") if isinstance(details, dict) else None
    entries = error.get("details") if isinstance(error, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(entry.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _is_transport_error(exc: Exception) -> bool:
    """aiohttp/httpx connection and timeout errors, without importing either here."""
    module = type(exc).__module__.split(".")[0]
    return module in {"aiohttp", "httpx", "httpx2", "httpcore"}
