"""Edge policy for submissions: who is calling, and may they submit now.

Every piece of state lives in Redis (keys, buckets, the backpressure flag), so the three
replicas enforce one limit, not three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, g, request

from api.admission import Decision, Submission, TierLimits
from api.errors import ApiError
from api.services import Services
from batchgate.apikeys import ApiKey, hash_key
from batchgate.settings import Settings
from batchgate.tenants import anonymous_tenant

#: Endpoints a browser reads with ``EventSource``, which cannot send headers: the only ones
#: that take the key as ``?key=`` (a URL ends up in histories and logs; headers do not).
QUERY_KEY_ENDPOINTS = frozenset({"task_events.task_events", "metrics.stream"})


@dataclass(frozen=True)
class Caller:
    """The identity a request acts as: ``owner`` owns its tasks (None: anonymous), and its
    ``tenant`` shares model calls, cache entries and sessions with the tenant's other keys."""

    owner: str | None
    bucket: str
    rate: float
    burst: int
    tenant: str = ""


def api_key_sent() -> str:
    """The key of the request: ``X-API-Key``, or as the Gemini SDK (``x-goog-api-key``) or the
    OpenAI SDK (``Authorization: Bearer``) send it, for the drop-in endpoints; ``?key=`` on the
    event streams only; empty if none."""
    authorization = request.headers.get("Authorization", "")
    bearer = authorization[7:] if authorization[:7].lower() == "bearer " else ""
    query = request.args.get("key") if request.endpoint in QUERY_KEY_ENDPOINTS else None
    for value in (request.headers.get("X-API-Key"), request.headers.get("x-goog-api-key"), query, bearer):
        if value and value.strip():
            return value.strip()
    return ""


def refuse_key_in_query() -> None:
    """Before every request: ``?key=`` anywhere but an event stream is refused (400), so a key
    never travels in a URL that a client could send in a header instead."""
    if "key" in request.args and request.endpoint not in QUERY_KEY_ENDPOINTS:
        raise ApiError(
            400,
            "key_in_query",
            "send the API key in a header (X-API-Key, x-goog-api-key or Authorization: Bearer); "
            "?key= is accepted only by the event streams",
        )


def tier_limits(settings: Settings) -> dict[str, TierLimits]:
    """Each tier's submission rate, burst and tenant in-flight cap."""
    in_flight = settings.edge.tier_max_in_flight()
    return {
        tier: TierLimits(rate, burst, in_flight[tier])
        for tier, (rate, burst) in settings.edge.tier_limits().items()
    }


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
    if not settings.edge.auth_enabled:
        address = request.headers.get("X-Real-IP") or request.remote_addr or "unknown"
        caller = Caller(
            None,
            f"ip:{address}",
            settings.edge.anonymous_rate,
            settings.edge.anonymous_burst,
            anonymous_tenant(address),
        )
        return caller, ""
    key = api_key_sent()
    if not key:
        raise ApiError(401, "missing_api_key", "send your API key in the X-API-Key header")
    return None, key


def _caller(svc: Services, found: ApiKey | None) -> Caller:
    if found is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid (unknown or revoked)")
    rate, burst = svc.settings.edge.tier_limits().get(
        found.tier, min(svc.settings.edge.tier_limits().values())
    )
    return Caller(found.key_hash, f"key:{found.key_hash}", rate, burst, found.tenant)


def authenticate_and_admit(svc: Services, submission: Submission) -> tuple[Caller, Decision]:
    """``authenticate`` then ``admit`` in one Redis round trip (the script reads the key's tier
    and tenant, looks up the tenant's cache entry and takes a slot of its in-flight tasks)."""
    settings = svc.settings
    key = api_key_sent()
    if not settings.edge.auth_enabled or not key:
        caller = authenticate(svc)  # anonymous, or the 401 for a missing key
        decision = svc.admission.admit(
            caller.bucket,
            caller.rate,
            caller.burst,
            tenant=caller.tenant,
            max_in_flight=settings.edge.anonymous_max_in_flight,
            submission=submission,
        )
        return caller, _enforce(caller, decision)
    key_hash = hash_key(key)
    decision = svc.admission.admit_key(
        svc.apikeys.record_key(key_hash), key_hash, tier_limits(settings), submission=submission
    )
    if decision.reason == "unknown_key":
        raise ApiError(401, "invalid_api_key", "the API key is not valid (unknown or revoked)")
    caller = Caller(key_hash, f"key:{key_hash}", decision.rate, decision.limit, decision.tenant)
    return caller, _enforce(caller, decision)


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
    if decision.reason == "too_many_in_flight":
        raise ApiError(
            429,
            "too_many_in_flight",
            f"{decision.max_in_flight} tasks of yours are already queued or running; retry after one finishes",
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
