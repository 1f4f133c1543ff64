"""Metrics for ops: the latest snapshot, its live stream (SSE), and Prometheus text."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request, stream_with_context
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from api.errors import ApiError
from api.prometheus import RedisTotals
from api.services import services

bp = Blueprint("metrics", __name__)

#: A comment line keeps idle SSE connections (and proxies) from timing out.
KEEPALIVE_S = 15.0


@bp.get("/api/v1/metrics")
def latest() -> Response:
    """The latest snapshot published by the metrics task."""
    payload = services().metrics_feed.latest()
    if payload is None:
        raise ApiError(503, "metrics_not_ready", "no metrics snapshot yet (is the metrics task running?)")
    return Response(payload, mimetype="application/json")


@bp.get("/api/v1/metrics/stream")
def stream() -> Response:
    """Server-sent events: the latest snapshot at once, then each new one as it is published."""
    feed = services().metrics_feed

    def events() -> Iterator[str]:
        generation = feed.generation
        first = feed.latest()
        if first is not None:
            yield f"event: metrics\ndata: {first}\n\n"
        while True:
            newer, payload = feed.wait_newer(generation, KEEPALIVE_S)
            if newer > generation and payload is not None:
                generation = newer
                yield f"event: metrics\ndata: {payload}\n\n"
            else:
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(events()), mimetype="text/event-stream", headers=headers)


@bp.get("/metrics")
def prometheus() -> Response:
    """Prometheus text format, from the cluster-wide totals in Redis."""
    svc = services()
    svc.http_requests.flush()  # this replica's own counts; the others' are at most a second old
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisTotals(svc.redis, svc.settings.key_prefix, svc.settings.queue))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def count_http_request(response: Response) -> Response:
    """App-wide after-request hook: count every answered request (all replicas add up in Redis)."""
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    current_app.extensions["batchgate"].http_requests.count(
        f"{request.method} {route} {response.status_code}"
    )
    return response
