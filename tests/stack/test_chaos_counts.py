"""The fault run's counting (pure): lost, duplicated, unexpected, expected failures, recovery."""

from __future__ import annotations

from typing import Any

from stack.chaos_counts import Submission, count, failed_run, line


def done(text: str, submitted: float, finished: float, status: str = "succeeded") -> dict[str, Any]:
    return {"status": status, "result": {"text": text}, "submitted_at": submitted, "finished_at": finished}


def blocked(submitted: float, finished: float, code: str = "model_blocked") -> dict[str, Any]:
    return {"status": "failed", "error": {"code": code}, "submitted_at": submitted, "finished_at": finished}


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
    assert counts["unexpected"] == 1 and counts["expected_failures"] == 0
    assert counts["recovered"] == 3  # retried submissions and the requeued task
    assert counts["requeued_by_sweeper"] == 1
    assert counts["duplicate_gemini_calls"] == 9 - 7  # model items beyond the succeeded tasks
    # First answer after the fault over at 5.0 came at 12.0; after the one over at 30.0, at 40.0.
    assert counts["max_recovery_s"] == 10.0 and counts["max_latency_s"] == 40.0
    assert line(counts).startswith("submitted=9 accepted=8 rejected=1 lost=2 duplicated_results=2 ")
    assert failed_run(counts)


def test_a_blocked_item_failing_is_expected_and_its_batch_mates_must_succeed() -> None:
    batch, other = ("worker-1", "100.5"), ("worker-1", "101.5")
    bad = Submission("x [[sim:block]]", "", ["t1"], 1, None, blocked(0, 2), blocked(0, 2), batch=batch)
    bad.expected_error = "model_blocked"
    mate = Submission("y", "Y", ["t2"], 1, None, done("Y", 0, 2), done("Y", 0, 2), batch=batch)
    failed_mate = Submission(
        "z",
        "Z",
        ["t3"],
        1,
        None,
        blocked(0, 2, "internal_error"),
        blocked(0, 2, "internal_error"),
        batch=batch,
    )
    elsewhere = Submission("w", "W", ["t4"], 1, None, done("W", 0, 1), done("W", 0, 1), batch=other)
    counts = count([bad, mate, failed_mate, elsewhere], model_items=2, faults=[])
    assert counts["expected_failures"] == 1 and counts["blocked_batches"] == 1
    assert counts["batch_mates"] == 2 and counts["batch_mates_not_ok"] == 1
    assert counts["unexpected"] == 1  # the mate that failed; the blocked item failing is expected
    assert counts["duplicate_gemini_calls"] == 0  # a blocked prompt is answered nothing

    slipped = Submission("v [[sim:block]]", "", ["t5"], 1, None, done("?", 0, 1), done("?", 0, 1))
    slipped.expected_error = "model_blocked"
    counts = count([slipped], model_items=1, faults=[])
    assert counts["unexpected"] == 1 and counts["expected_failures"] == 0
    assert failed_run(counts)


def test_clients_sending_one_key_at_once_must_get_one_task_and_one_answer() -> None:
    def sent(ids: list[str], echoes: list[dict[str, Any] | None], attempts: int = 3) -> Submission:
        return Submission(
            "p", "P", ids, attempts, None, done("P", 0, 1), done("P", 0, 1), clients=3, echoes=echoes
        )

    good = count([sent(["t1"] * 3, [done("P", 0, 1), done("P", 0, 1)])], model_items=1, faults=[])
    assert (good["same_key_clients"], good["same_key_ids"], good["same_key_answers"]) == (3, 1, 1)
    assert good["duplicated_results"] == 0 and good["recovered"] == 0 and not failed_run(good)

    two_tasks = count([sent(["t1", "t1", "t2"], [done("P", 0, 1)] * 2)], model_items=2, faults=[])
    assert two_tasks["same_key_ids"] == 2 and two_tasks["duplicated_results"] == 1

    two_answers = count([sent(["t1"] * 3, [done("P", 0, 1), done("Q", 0, 1)])], model_items=1, faults=[])
    assert two_answers["same_key_answers"] == 2 and two_answers["duplicated_results"] == 1

    one_unanswered = count([sent(["t1"] * 3, [done("P", 0, 1), None], attempts=4)], model_items=1, faults=[])
    assert one_unanswered["lost"] == 1 and one_unanswered["recovered"] == 1  # 4 attempts by 3 clients
