"""The fault harness: its counting (pure), and a short fault run that must lose nothing."""

from __future__ import annotations

from pathlib import Path

from batchgate.chaos import run_chaos
from batchgate.chaos_counts import Submission, count, line


def done(text: str, submitted: float, finished: float, status: str = "succeeded") -> dict:
    return {"status": status, "result": {"text": text}, "submitted_at": submitted, "finished_at": finished}


def test_counts_lost_duplicated_unexpected_and_recovered() -> None:
    ok = Submission("a", "A", ["t1"], attempts=1, final=done("A", 0, 1), reread=done("A", 0, 1))
    retried = Submission("b", "B", ["t2"], attempts=3, final=done("B", 0, 12), reread=done("B", 0, 12))
    never_finished = Submission("c", "C", ["t3"], attempts=1)
    vanished = Submission("d", "D", ["t4"], attempts=1, final=done("D", 0, 2), reread=None)
    changed = Submission("e", "E", ["t5"], attempts=1, final=done("E", 0, 2), reread=done("X", 0, 2))
    twice = Submission("f", "F", ["t6", "t7"], attempts=2, final=done("F", 0, 3), reread=done("F", 0, 3))
    wrong = Submission("g", "G", ["t8"], attempts=1, final=done("?", 0, 3), reread=done("?", 0, 3))
    refused = Submission("h", "H", [], attempts=60, refused="no definitive answer")
    requeued = Submission(
        "i", "I", ["t9"], attempts=1, final=done("I", 0, 40), reread=done("I", 0, 40), requeued=1
    )
    runs = [ok, retried, never_finished, vanished, changed, twice, wrong, refused, requeued]
    counts = count(runs, model_items=9, faults=[("kill worker", 5.0), ("restart redis", 30.0)])
    assert counts["submitted"] == 9 and counts["accepted"] == 8 and counts["rejected"] == 1
    assert counts["lost"] == 2  # never finished, and gone when read again
    assert counts["duplicated_results"] == 2  # an answer that changed, a submission accepted twice
    assert counts["unexpected"] == 1
    assert counts["recovered"] == 3  # retried submissions and the requeued task
    assert counts["requeued_by_sweeper"] == 1
    assert counts["duplicate_gemini_calls"] == 9 - 7  # model items beyond the succeeded tasks
    # First answer after the fault at 5.0 came at 12.0; after the one at 30.0, at 40.0.
    assert counts["max_recovery_s"] == 10.0 and counts["max_latency_s"] == 40.0
    assert line(counts).startswith("submitted=9 accepted=8 rejected=1 lost=2 duplicated_results=2 ")


def test_a_short_fault_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Workers killed twice, an API replica killed, Redis restarted, under steady load."""
    counts = run_chaos(n=240, rate=30, run_dir=tmp_path)
    assert counts["faults"] == 4
    assert counts["accepted"] + counts["rejected"] == counts["submitted"] == 240
    assert counts["accepted"] == 240, counts
    assert counts["lost"] == 0, counts
    assert counts["duplicated_results"] == 0, counts
    assert counts["unexpected"] == 0, counts
