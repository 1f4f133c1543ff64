"""What a fault run saw, counted the way Jepsen reports it: lost, duplicated, unexpected, recovered.

Pure: the harness (``stack.chaos``) records one ``Submission`` per request it meant to
send and the faults it injected; ``count`` turns them into the one line ``make chaos`` prints.
A submission is either expected to succeed with its own answer, or (a prompt the model blocks)
to fail with a given error code: both are counted, and anything else is ``unexpected``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Submission:
    """One request of the run, from the client's side (sent by one client, or by several at once
    with one Idempotency-Key)."""

    prompt: str
    #: The answer it must get (the simulator's); unused when it is expected to fail.
    expected_text: str
    #: Task ids the API answered with (202/200), over every attempt of every client that sent
    #: it; more than one distinct id = accepted twice.
    task_ids: list[str] = field(default_factory=list)
    #: Attempts to submit, over all its clients (one per client when each got a definitive
    #: answer at once).
    attempts: int = 0
    #: A definitive refusal (a 4xx other than 429, or retries exhausted).
    refused: str | None = None
    #: The first finished record read (``status``, ``result``/``error``, times).
    final: dict[str, Any] | None = None
    #: The record read again at the end of the run (None: it was gone).
    reread: dict[str, Any] | None = None
    #: Times the sweeper re-enqueued the task (read from Redis at the end).
    requeued: int = 0
    #: The error code it must fail with (``model_blocked``), or None: it must succeed.
    expected_error: str | None = None
    #: Clients that sent it at once, with one Idempotency-Key and one body.
    clients: int = 1
    #: The finished record each other client read (None: that client got none).
    echoes: list[dict[str, Any] | None] = field(default_factory=list)
    #: The batch that answered it: (worker process that claimed it, when), read from Redis.
    batch: tuple[str, str] | None = None


def count(
    submissions: Sequence[Submission], model_items: int, faults: Sequence[tuple[str, float]]
) -> dict[str, Any]:
    """The run's counts. ``model_items``: prompts the model answered (the simulator's count;
    a blocked prompt is answered nothing); ``faults``: (what, when it was over), wall clock."""
    accepted = [s for s in submissions if s.task_ids]
    lost = [s for s in accepted if s.final is None or s.reread is None or None in s.echoes]
    duplicated = [s for s in accepted if _duplicated(s)]
    finished = [s for s in accepted if s.final is not None]
    unexpected = [s for s in finished if not _as_expected(s)]
    failing = [s for s in finished if s.expected_error is not None]
    blocked_batches = {s.batch for s in failing if s.batch is not None}
    mates = [s for s in finished if s.expected_error is None and s.batch in blocked_batches]
    succeeded = sum(1 for s in finished if _status(s.final) == "succeeded")
    recovered = [s for s in finished if s.attempts > s.clients or s.requeued > 0]
    latencies = [
        float(s.final["finished_at"]) - float(s.final["submitted_at"])
        for s in finished
        if s.final is not None
        and s.final.get("finished_at") is not None
        and s.final.get("submitted_at") is not None
    ]
    same_key = [s for s in accepted if s.clients > 1]
    return {
        "submitted": len(submissions),
        "accepted": len(accepted),
        "rejected": sum(1 for s in submissions if not s.task_ids),
        "lost": len(lost),
        "duplicated_results": len(duplicated),
        "duplicate_gemini_calls": max(0, model_items - succeeded),
        "max_latency_s": round(max(latencies, default=0.0), 1),
        "max_recovery_s": round(max_recovery_s(finished, faults), 1),
        "unexpected": len(unexpected),
        "expected_failures": sum(1 for s in failing if _as_expected(s)),
        "blocked_batches": len(blocked_batches),
        "batch_mates": len(mates),
        "batch_mates_not_ok": sum(1 for s in mates if not _as_expected(s)),
        "same_key_clients": sum(s.clients for s in same_key),
        "same_key_ids": max((len(set(s.task_ids)) for s in same_key), default=0),
        "same_key_answers": max((len(_answers(s)) for s in same_key), default=0),
        "recovered": len(recovered),
        "requeued_by_sweeper": sum(s.requeued for s in accepted),
        "faults": len(faults),
    }


def max_recovery_s(finished: Sequence[Submission], faults: Sequence[tuple[str, float]]) -> float:
    """The longest, over the faults, from the end of a fault to the first answer after it: how
    long the system took to answer anything again."""
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


def failed_run(counts: dict[str, Any]) -> bool:
    """Anything refused, lost, duplicated or not as expected (a blocked item that succeeded, or a
    call-mate of one that did not)."""
    return any(counts[k] for k in ("rejected", "lost", "duplicated_results", "unexpected"))


def _as_expected(s: Submission) -> bool:
    record = s.final or {}
    if s.expected_error is not None:
        return _status(record) == "failed" and (record.get("error") or {}).get("code") == s.expected_error
    return _status(record) == "succeeded" and (record.get("result") or {}).get("text") == s.expected_text


def _duplicated(s: Submission) -> bool:
    """Accepted under two ids, or given two different answers (on a second read, or to two of
    the clients that sent it at once)."""
    return len(set(s.task_ids)) > 1 or len(_answers(s)) > 1


def _answers(s: Submission) -> set[tuple[Any, ...]]:
    """The distinct answers it got: first read, read again, and every other client's."""
    return {_answer(r) for r in (s.final, s.reread, *s.echoes) if r is not None}


def _status(record: dict[str, Any] | None) -> str | None:
    return None if record is None else record.get("status")


def _answer(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record.get("status"),
        (record.get("result") or {}).get("text"),
        (record.get("error") or {}).get("code"),
    )
