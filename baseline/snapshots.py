"""Baseline files on disk: ``<folder>/<UTC timestamp>.json`` and the ``latest.json`` pointer.

``latest.json`` is a relative symlink to the newest capture, replaced atomically, so a
reader sees the old baseline or the new one, never half of either; the captures themselves
are never rewritten.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from baseline.model import BaselineError, PerformanceBaseline

LATEST = "latest.json"


def write_snapshot(baseline: PerformanceBaseline, folder: Path) -> Path:
    """Write ``baseline`` as a new capture and point ``latest.json`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(baseline.created_at))
    path = folder / f"{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.json"
    path.write_text(baseline.to_json())
    pointer = folder / f".{LATEST}.{os.getpid()}"
    pointer.unlink(missing_ok=True)
    pointer.symlink_to(path.name)
    os.replace(pointer, folder / LATEST)
    return path


def load_latest(folder: Path) -> PerformanceBaseline:
    """The capture ``latest.json`` points at."""
    latest = folder / LATEST
    if not latest.exists():
        raise BaselineError(f"no baseline yet: {latest} does not exist (run make baseline)")
    return PerformanceBaseline.load_file(latest)
