"""What the caller's tenant used and what it cost: ``GET /api/v1/usage``."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

from flask import Blueprint, Response, jsonify, request

from api.edge import add_rate_headers, authenticate
from api.errors import ApiError
from api.services import services
from batchgate.budgets import spent_fields, states
from batchgate.usage_store import MAX_DAYS, UsageQuery

bp = Blueprint("usage", __name__, url_prefix="/api/v1")

bp.after_request(add_rate_headers)

GROUPS = ("day", "key", "model")


@bp.get("/usage")
def usage() -> Response:
    """The caller's tenant's usage from ``from`` to ``to`` (UTC days, both included; default:
    this month so far), grouped by ``group_by`` (day, key or model), with its budgets."""
    svc = services()
    caller = authenticate(svc)
    today = datetime.now(UTC).date()
    first = _day("from", today.replace(day=1))
    last = _day("to", today)
    if last < first:
        raise ApiError(400, "invalid_range", "from must not be after to")
    if (last - first).days >= MAX_DAYS:
        raise ApiError(400, "invalid_range", f"at most {MAX_DAYS} days at a time")
    group_by = request.args.get("group_by") or None
    if group_by is not None and group_by not in GROUPS:
        raise ApiError(400, "invalid_group_by", f"group_by must be one of {', '.join(GROUPS)}")
    tenant = caller.tenant
    body = svc.usage.query(UsageQuery(tenant, first, last, group_by))
    limits = svc.budgets.limits(tenant)
    month = svc.usage.month(tenant, spent_fields(limits))
    shown = [s for s in states(limits, month) if s.limit.key is None or s.limit.key == caller.owner]
    return jsonify(
        {
            "tenant": tenant,
            "from": first.isoformat(),
            "to": last.isoformat(),
            **({"group_by": group_by} if group_by else {}),
            **body,
            "budgets": [s.body() for s in shown],
            "generated_at": time.time(),
        }
    )


def _day(name: str, default: date) -> date:
    raw = request.args.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "invalid_date", f"{name} must be a day as YYYY-MM-DD, not {raw!r}") from None
