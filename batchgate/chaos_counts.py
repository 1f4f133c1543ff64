"""What a fault run saw, counted the way Jepsen reports it: lost, duplicated, unexpected, recovered.

Pure: the harness (``batchgate.chaos``) records one ``Submission`` per request it meant to
send and the times of the faults it injected; ``count`` turns them into the one line
``make chaos`` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Submission:
    """One request of the run, from the client's side."""

    prompt: str
    expected_text: str
    #: Task ids the API answered with (202/200); more than one = accepted twice.
    task_ids: list[str] = field(default_factory=list)
    #: Attempts to submit (1 when the first one got a definitive answer).
    attempts: int = 0
    #: A definitive refusal (a 4xx other than 429, or retries exhausted).
    refused: str | None = None
    #: The first finished record read (``status``, ``result``/``error``, times).
    final: dict[str, Any] | None = None
    #: The record read again at the end of the run (None: it was gone).
    reread: dict[str, Any] | None = None
    #: Times the sweeper re-enqueued the task (read from Redis at the end).
    requeued: int = 0


def count(
    submissions: Sequence[Submission], model_items: int, faults: Sequence[tuple[str, float]]
) -> dict[str, Any]:
    """The run's counts; ``model_items``: prompts the model answered (the simulator's count)."""
    accepted = [s for s in submissions if s.task_ids]
    lost = [s for s in accepted if s.final is None or s.reread is None]
    duplicated = [
        s
        for s in accepted
        if len(set(s.task_ids)) > 1
        or (s.final is not None and s.reread is not None and _answer(s.final) != _answer(s.reread))
    ]
    finished = [s for s in accepted if s.final is not None]
    unexpected = [
        s
        for s in finished
        if s.final is not None
        and (
            s.final.get("status") != "succeeded"
            or (s.final.get("result") or {}).get("text") != s.expected_text
        )
    ]
    succeeded = sum(1 for s in finished if s.final is not None and s.final.get("status") == "succeeded")
    recovered = [s for s in finished if s.attempts > 1 or s.requeued > 0]
    latencies = [
        float(s.final["finished_at"]) - float(s.final["submitted_at"])
        for s in finished
        if s.final is not None
        and s.final.get("finished_at") is not None
        and s.final.get("submitted_at") is not None
    ]
    return {
        "submitted": len(submissions),
        "accepted": len(accepted),
        "rejected": sum(1 for s in submissions if not s.task_ids),
        "lost": len(lost),
        "duplicated_results": len(duplicated),
        "duplicate_gemini_calls": max(0, model_items - succeeded),
        "max_recovery_s": round(max_recovery_s(finished, faults), 1),
        "unexpected": len(unexpected),
        "recovered": len(recovered),
        "requeued_by_sweeper": sum(s.requeued for s in accepted),
        "max_latency_s": round(max(latencies, default=0.0), 1),
        "faults": len(faults),
    }


def max_recovery_s(finished: Sequence[Submission], faults: Sequence[tuple[str, float]]) -> float:
    """The longest, over the faults, from a fault to the first answer after it: how long the
    system took to answer anything again."""
    finishes = sorted(
        float(s.final["finished_at"])
        for s in finished
        if s.final is not None
        and s.final.get("status") == "succeeded"
        and s.final.get("finished_at") is not None
    )
    worst = 0.0
    for _, at in faults:
        after = next((t for t in finishes if t > at), None)
        if after is not None:
            worst = max(worst, after - at)
    return worst


def line(counts: dict[str, Any]) -> str:
    """``key=value`` pairs on one line, in the order ``count`` made them."""
    return " ".join(f"{key}={value}" for key, value in counts.items())


def _answer(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record.get("status"),
        (record.get("result") or {}).get("text"),
        (record.get("error") or {}).get("code"),
    )
