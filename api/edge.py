"""Edge policy for submissions: who is calling, and may they submit now.

Every piece of state lives in Redis (keys, buckets, the backpressure flag), so the three
replicas enforce one limit, not three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, g, request

from api.errors import ApiError
from api.services import Services
from batchgate.admission import Decision
from batchgate.apikeys import ApiKey, hash_key


@dataclass(frozen=True)
class Caller:
    """The identity a request acts as: ``owner`` owns its tasks (None: anonymous)."""

    owner: str | None
    bucket: str
    rate: float
    burst: int


def api_key_sent() -> str:
    """The key of the request: ``X-API-Key``, or as the Gemini SDK (``x-goog-api-key``,
    ``?key=``) or the OpenAI SDK (``Authorization: Bearer``) send it, for the drop-in
    endpoints; empty if none."""
    authorization = request.headers.get("Authorization", "")
    bearer = authorization[7:] if authorization[:7].lower() == "bearer " else ""
    for value in (
        request.headers.get("X-API-Key"),
        request.headers.get("x-goog-api-key"),
        request.args.get("key"),
        bearer,
    ):
        if value and value.strip():
            return value.strip()
    return ""


def authenticate(svc: Services) -> Caller:
    """The caller named by ``X-API-Key``; 401 without a valid key (unless auth is off)."""
    caller, key = _anonymous_or_key(svc)
    return caller if caller is not None else _caller(svc, svc.apikeys.lookup(key))


def authenticate_and_read(svc: Services, task_id: str) -> tuple[Caller, dict[str, Any] | None]:
    """``authenticate`` and the task's record, read together in one Redis round trip."""
    caller, key = _anonymous_or_key(svc)
    if caller is not None:
        return caller, svc.store.get(task_id)
    key_hash = hash_key(key)
    pipe = svc.redis.pipeline(transaction=False)
    pipe.hgetall(svc.apikeys.record_key(key_hash))
    pipe.hgetall(svc.store.key(task_id))
    raw_key, raw_record = pipe.execute()
    return _caller(svc, svc.apikeys.parse(key_hash, raw_key)), svc.store.decode(raw_record)


def _anonymous_or_key(svc: Services) -> tuple[Caller | None, str]:
    """The anonymous caller when auth is off, else the key sent (401 when none is)."""
    settings = svc.settings
    if not settings.auth_enabled:
        address = request.headers.get("X-Real-IP") or request.remote_addr or "unknown"
        return Caller(None, f"ip:{address}", settings.anonymous_rate, settings.anonymous_burst), ""
    key = api_key_sent()
    if not key:
        raise ApiError(401, "missing_api_key", "send your API key in the X-API-Key header")
    return None, key


def _caller(svc: Services, found: ApiKey | None) -> Caller:
    if found is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid (unknown or revoked)")
    rate, burst = svc.settings.tier_limits()[found.tier]
    return Caller(found.key_hash, f"key:{found.key_hash}", rate, burst)


def authenticate_and_admit(svc: Services, read: str | None = None) -> tuple[Caller, Decision]:
    """``authenticate`` then ``admit`` in one Redis round trip (the script reads the key's tier);
    ``read``: a string key fetched in that round trip too (``Decision.read_value``)."""
    settings = svc.settings
    key = api_key_sent()
    if not settings.auth_enabled or not key:
        caller = authenticate(svc)  # anonymous, or the 401 for a missing key
        return caller, admit(svc, caller, read)
    key_hash = hash_key(key)
    bucket = f"key:{key_hash}"
    decision = svc.admission.admit_key(
        svc.apikeys.record_key(key_hash), bucket, settings.tier_limits(), read=read
    )
    if decision.reason == "unknown_key":
        raise ApiError(401, "invalid_api_key", "the API key is not valid (unknown or revoked)")
    caller = Caller(key_hash, bucket, decision.rate, decision.limit)
    return caller, _enforce(caller, decision)


def admit(svc: Services, caller: Caller, read: str | None = None) -> Decision:
    """Spend a token of the caller's bucket; 429 over the rate, 503 over the queue's high water."""
    return _enforce(caller, svc.admission.admit(caller.bucket, caller.rate, caller.burst, read=read))


def _enforce(caller: Caller, decision: Decision) -> Decision:
    """Set the rate-limit headers and refuse (429/503) what the decision refused."""
    g.rate_headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset_s),
    }
    if decision.reason == "rate_limited":
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit exceeded ({caller.rate:g}/s, burst {caller.burst}); retry after {decision.retry_after_s}s",
            {"Retry-After": str(decision.retry_after_s)},
        )
    if decision.reason == "backpressure":
        raise ApiError(
            503,
            "overloaded",
            f"the queue is full ({decision.queue_depth} waiting); retry after {decision.retry_after_s}s",
            {"Retry-After": str(decision.retry_after_s), "X-Queue-Depth": str(decision.queue_depth)},
        )
    return decision


def add_rate_headers(response: Response) -> Response:
    """After-request hook: every response to an admitted-or-refused submission says the limit."""
    for name, value in getattr(g, "rate_headers", {}).items():
        response.headers.setdefault(name, value)
    return response
