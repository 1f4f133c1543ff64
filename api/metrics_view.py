"""Metrics for ops: the latest snapshot and its live stream (SSE) for API keys, and Prometheus
text for a scraper on the private network.

The snapshot and the stream need a valid key (any tier; the stream also takes it as ``?key=``,
since a browser's ``EventSource`` cannot send headers). One key holds at most
``metrics_streams_per_key`` streams open at once across every replica (``api.stream_slots``).
A stream gives its slot back when it ends or when its client goes away (gunicorn closes the
response once a write fails: the second snapshot or keep-alive after). A replica killed
mid-stream gives nothing back (nor does one stopped with streams open: gunicorn's arbiter
kills its worker when the graceful timeout ends, as the worker starts to cancel its
requests): its slots expire as stale. A stream also ends after ``metrics_stream_max_s``; the
browser reconnects and takes a slot anew.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request, stream_with_context
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from api.edge import authenticate
from api.errors import ApiError
from api.metrics_feed import MetricsFeed
from api.prometheus import RedisTotals
from api.prometheus_tenants import TenantUsage
from api.services import services
from api.stream_slots import HEARTBEAT_S, StreamSlot, streams_key

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

#: A comment line keeps idle SSE connections (and proxies) from timing out.
KEEPALIVE_S = 15.0
#: Retry-After of a stream refused at the cap: a stream whose client left frees its slot at
#: its next write, a keep-alive at most.
RETRY_AFTER_S = math.ceil(KEEPALIVE_S)


@bp.get("/api/v1/metrics")
def latest() -> Response:
    """The latest snapshot published by the metrics task."""
    svc = services()
    authenticate(svc)
    payload = svc.metrics_feed.latest()
    if payload is None:
        raise ApiError(503, "metrics_not_ready", "no metrics snapshot yet (is the metrics task running?)")
    return Response(payload, mimetype="application/json")


@bp.get("/api/v1/metrics/stream")
def stream() -> Response:
    """Server-sent events: the latest snapshot at once, then each new one as it is published,
    for at most ``metrics_stream_max_s`` (see the module docstring for the per-key cap)."""
    svc = services()
    caller = authenticate(svc)
    limit = svc.settings.edge.metrics_streams_per_key
    slot = StreamSlot(svc.redis, streams_key(svc.settings.broker.key_prefix, caller.bucket), limit)
    if not slot.hold():
        raise ApiError(
            429,
            "too_many_streams",
            f"this API key already has {limit} metrics streams open (at most {limit} at once); "
            f"close one, or retry after {RETRY_AFTER_S}s",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    events = _events(svc.metrics_feed, slot, svc.settings.edge.metrics_stream_max_s)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = Response(stream_with_context(events), mimetype="text/event-stream", headers=headers)
    # The server closes the response however it ends (even unread, as for HEAD), while the
    # generator's own ``finally`` runs only once it has started.
    response.call_on_close(slot.release)
    return response


def _events(feed: MetricsFeed, slot: StreamSlot, max_s: float) -> Iterator[str]:
    now = time.monotonic()
    deadline = now + max_s
    next_beat = now + HEARTBEAT_S
    wrote = now
    try:
        generation = feed.generation
        first = feed.latest()
        if first is not None:
            yield f"event: metrics\ndata: {first}\n\n"
            wrote = time.monotonic()
        while (now := time.monotonic()) < deadline:
            wake = min(next_beat, wrote + KEEPALIVE_S, deadline)
            newer, payload = feed.wait_newer(generation, max(0.0, wake - now))
            now = time.monotonic()
            if now >= next_beat:
                if not _still_held(slot):
                    return
                next_beat = now + HEARTBEAT_S
            if newer > generation and payload is not None:
                generation = newer
                yield f"event: metrics\ndata: {payload}\n\n"
                wrote = time.monotonic()
            elif wrote + KEEPALIVE_S <= now < deadline:
                yield ": keep-alive\n\n"
                wrote = time.monotonic()
    finally:  # the end, the client gone (GeneratorExit) or the greenlet killed
        slot.release()


def _still_held(slot: StreamSlot) -> bool:
    """Refresh the slot; False when it was pruned (this stream stalled past ``STALE_AFTER_S``)
    and the key's other streams have taken every slot since."""
    try:
        held = slot.hold()
    except redis.RedisError as exc:  # keep streaming; the next heartbeat tries again
        log.warning("could not refresh a metrics stream's slot: %s", exc)
        return True
    if not held:
        log.info("a metrics stream lost its slot to newer streams of its key; closing it")
    return held


@bp.get("/metrics")
def prometheus() -> Response:
    """Prometheus text format, from the cluster-wide totals in Redis; no key, for a scraper on
    the private network (cluster totals, and usage per tenant by name for the top
    ``BATCHGATE_PROMETHEUS_TOP_TENANTS``; no request content)."""
    svc = services()
    svc.http_requests.flush()  # this replica's own counts; the others' are at most a second old
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisTotals(svc.redis, svc.settings.broker.key_prefix, svc.settings.broker.queue))
    if svc.settings.edge.prometheus_top_tenants > 0:
        registry.register(
            TenantUsage(svc.redis, svc.settings.broker.key_prefix, svc.settings.edge.prometheus_top_tenants)
        )
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def count_http_request(response: Response) -> Response:
    """App-wide after-request hook: count every answered request (all replicas add up in Redis)."""
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    current_app.extensions["batchgate"].http_requests.count(
        f"{request.method} {route} {response.status_code}"
    )
    return response
