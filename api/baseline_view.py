"""The active PerformanceBaseline and the last LatencyDriftSignal, for ops and the pipeline."""

from __future__ import annotations

from flask import Blueprint, Response

from api.errors import ApiError
from api.services import services

bp = Blueprint("baseline", __name__, url_prefix="/api/v1")


@bp.get("/baseline")
def active_baseline() -> Response:
    """The baseline drift is measured against (404 until one is activated)."""
    payload = services().baselines.active_json()
    if payload is None:
        raise ApiError(404, "no_baseline", "no baseline is active; capture one with make baseline")
    return Response(payload, mimetype="application/json")


@bp.get("/drift")
def last_drift() -> Response:
    """The last drift signal the metrics task computed (404 before the first)."""
    svc = services()
    payload = svc.baselines.drift_json()
    if payload is None:
        if svc.baselines.active_json() is None:
            raise ApiError(404, "no_baseline", "no baseline is active, so there is no drift signal")
        raise ApiError(404, "no_drift_signal", "the metrics task has not evaluated the baseline yet")
    return Response(payload, mimetype="application/json")
