"""Liveness and readiness probes."""

from __future__ import annotations

import time

import redis
from flask import Blueprint, Response, jsonify

from api.errors import error_response
from api.services import services
from batchgate.keys import workers_key

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """The process is up and serving."""
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    """Redis answers and at least one batch worker has sent a heartbeat recently."""
    svc = services()
    try:
        svc.redis.ping()
        cutoff = time.time() - svc.settings.broker.worker_heartbeat_ttl_s
        workers = int(svc.redis.zcount(workers_key(svc.settings.broker.key_prefix), cutoff, "+inf"))
    except redis.RedisError as exc:
        return error_response(503, "redis_unavailable", f"Redis is not reachable: {type(exc).__name__}")
    if workers < 1:
        return error_response(503, "no_workers", "no batch worker is consuming")
    return jsonify({"status": "ready", "workers": workers})
