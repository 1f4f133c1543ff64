"""Redis keys and channels the workers write and the API reads (named once, for both)."""

from __future__ import annotations


def workers_key(prefix: str) -> str:
    """Sorted set of consumer names scored by their last heartbeat (wall clock)."""
    return f"{prefix}:workers"


def metrics_latest_key(prefix: str) -> str:
    """Where the latest metrics snapshot (JSON) is kept."""
    return f"{prefix}:metrics:latest"


def metrics_channel(prefix: str) -> str:
    """Where every metrics snapshot is published."""
    return f"{prefix}:metrics"
