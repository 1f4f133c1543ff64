"""The fault run's report (``chaos-report.json``): the counts, the faults, the model's counters,
and the tasks worth a look."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stack.chaos_counts import Submission

if TYPE_CHECKING:
    from stack.chaos import Run


def write_report(
    path: Path,
    run: Run,
    counts: dict[str, Any],
    records: dict[str, dict[str, Any]],
    messages: dict[str, str],
    stats: dict[str, Any],
    settings: dict[str, str],
) -> None:
    """The counts, the faults, the model's counters, and the tasks worth a look: lost ones
    (as Redis holds them, and where their message is), re-enqueued ones and the slowest."""
    accepted = [s for s in run.everything if s.task_ids]

    def latency(s: Submission) -> float:
        final = s.final or {}
        return float(final.get("finished_at") or 0) - float(final.get("submitted_at") or 0)

    def brief(s: Submission) -> dict[str, Any]:
        final = s.final or {}
        keep = ("status", "submitted_at", "finished_at", "timings", "error")
        return {
            "task_id": s.task_ids[0],
            "latency_s": round(latency(s), 2) if s.final else None,
            "attempts": s.attempts,
            **{k: final.get(k) for k in keep},
            "stored": records.get(s.task_ids[0]),
            "message": messages.get(s.task_ids[0], "nowhere"),
        }

    report = {
        "counts": counts,
        "settings": settings,
        "faults": run.faults,
        "model": stats,
        "lost": [brief(s) for s in accepted if s.final is None or s.reread is None][:50],
        "requeued": [brief(s) for s in accepted if s.requeued],
        "slowest": [brief(s) for s in sorted(accepted, key=latency, reverse=True)[:20]],
        "same_key": {"task_ids": sorted(set(run.same_key.task_ids)), "final": run.same_key.final},
    }
    path.write_text(json.dumps(report, indent=2))
