"""The slot tuner: probes above the floor while slots bind, keeps a step only if batches did not slow."""

from __future__ import annotations

from batching.slot_tuner import COOLDOWN_S, SlotTuner


def run_epoch(
    tuner: SlotTuner,
    now: float,
    floor: int,
    cap: int | None,
    seconds_at: dict[int, float] | None = None,
    model_slots: int | None = None,
    slot_bound: bool = True,
) -> int:
    """Finish one limit's worth of full batches (32 items); a model with ``model_slots`` takes
    longer per batch in proportion to the batches beyond its slots (Little's law)."""
    limit = tuner.limit(floor, cap)
    per_batch = 4.0 * (max(1.0, limit / model_slots) if model_slots else 1.0)
    for _ in range(max(4, limit)):
        if slot_bound:
            tuner.waited_for_slot()
        tuner.finished(now, limit, per_batch, 32, floor, cap)
    return tuner.limit(floor, cap)


def test_a_model_with_room_is_given_more_slots_up_to_the_pool() -> None:
    tuner = SlotTuner()
    limits = [run_epoch(tuner, float(i), floor=4, cap=24) for i in range(20)]
    assert limits[0] == 6  # 4 and half again
    assert limits[-1] == 24
    assert limits == sorted(limits)


def test_a_model_that_queues_extra_calls_keeps_its_slots() -> None:
    tuner = SlotTuner()
    limits = [run_epoch(tuner, float(i), floor=8, cap=32, model_slots=8) for i in range(10)]
    # A probe of half again, refused (half again the time per batch), then one of one
    # slot, refused too, then no more during the cooldown.
    assert limits[:4] == [12, 8, 9, 8]
    assert set(limits[4:]) == {8}


def test_a_refused_probe_is_retried_after_the_cooldown() -> None:
    tuner = SlotTuner()
    for i in range(4):
        run_epoch(tuner, float(i), floor=8, cap=32, model_slots=8)
    assert run_epoch(tuner, 4.0, floor=8, cap=32, model_slots=8) == 8
    assert run_epoch(tuner, 3.0 + COOLDOWN_S, floor=8, cap=32, model_slots=8) == 9


def test_the_learned_limit_stops_below_what_the_model_serves() -> None:
    tuner = SlotTuner()
    limits = [run_epoch(tuner, 100.0 * i, floor=4, cap=64, model_slots=16) for i in range(40)]
    settled = limits[-10:]
    # Within a step of it; past it only while probing again (every other epoch here, as
    # each epoch is longer than the cooldown).
    assert all(12 <= n <= 20 for n in settled)
    assert sum(n > 16 for n in settled) <= len(settled) // 2


def test_no_probe_while_slots_are_free() -> None:
    idle = SlotTuner()
    assert {run_epoch(idle, float(i), floor=4, cap=32, slot_bound=False) for i in range(5)} == {4}


def test_a_model_that_slows_down_later_gets_the_step_back() -> None:
    tuner = SlotTuner()
    for i in range(3):
        run_epoch(tuner, float(i), floor=4, cap=32)
    learned = tuner.limit(4, 32)
    assert learned > 5
    for _ in range(max(4, learned)):
        tuner.finished(10.0, learned, 4.0 * 2, 32, 4, 32)  # twice as long per item now
    assert 4 <= tuner.limit(4, 32) < learned


def test_batches_started_under_another_limit_are_not_counted() -> None:
    tuner = SlotTuner()
    for _ in range(10):
        tuner.waited_for_slot()
        tuner.finished(0.0, 3, 4.0, 32, 4, 32)
    assert tuner.limit(4, 32) == 4


def test_the_floor_and_the_pool_bound_the_limit() -> None:
    tuner = SlotTuner()
    assert tuner.limit(8, 4) == 4
    assert tuner.limit(8, None) == 8
    for i in range(10):
        run_epoch(tuner, float(i), floor=2, cap=6)
    assert tuner.limit(2, 6) == 6
    assert tuner.limit(12, 16) == 12  # a worker died: the survivor's share is above what it learned
    run_epoch(tuner, 20.0, floor=12, cap=16)
    assert tuner.limit(12, 16) == 16  # and takes up what the cluster learned (6 of 2: 36)


def test_smaller_batches_are_not_mistaken_for_a_slower_model() -> None:
    """More slots in a closed loop make smaller batches; a call has a fixed part (0.4 s) and
    a part per token (2 ms), so per token a smaller batch takes longer though nothing queues."""
    tuner, clients_tokens = SlotTuner(), 40_000
    for i in range(30):
        limit = tuner.limit(4, 24)
        for j in range(max(4, limit)):
            tokens = clients_tokens // limit + 40 * (j % 5)  # sizes vary a little within an epoch
            tuner.waited_for_slot()
            tuner.finished(float(i), limit, 0.4 + 0.002 * tokens, tokens, 4, 24)
    assert tuner.limit(4, 24) == 24


def test_calls_queueing_at_the_model_are_seen_though_batches_shrink() -> None:
    """The same closed loop on a model of 8 slots: the 9th call waits for one."""
    tuner, clients_tokens = SlotTuner(), 40_000
    seen = []
    for i in range(12):
        limit = tuner.limit(8, 32)
        seen.append(limit)
        for j in range(max(4, limit)):
            tokens = clients_tokens // limit + 40 * (j % 5)
            service = 0.4 + 0.002 * tokens
            tuner.waited_for_slot()
            tuner.finished(float(i), limit, service * max(1.0, limit / 8), tokens, 8, 32)
    assert seen[:4] == [8, 12, 8, 9]
    assert set(seen[4:]) == {8}


def test_where_the_quota_binds_no_step_is_kept_and_a_learned_limit_comes_down() -> None:
    """Most calls waiting for their quota turn: more slots only make smaller calls."""
    tuner, taken, waited = SlotTuner(), 0, 0
    for i in range(3):
        run_epoch(tuner, float(i), floor=4, cap=32)  # the quota has room: 4 -> 6 -> 9 -> 14
    assert tuner.limit(4, 32) == 14
    seen = []
    for i in range(4):
        limit = tuner.limit(4, 32)
        for _ in range(max(4, limit)):
            taken, waited = taken + 1, waited + 1  # every call waits for its turn
            tuner.turns(taken, waited)
            tuner.waited_for_slot()
            tuner.finished(10.0 + i, limit, 4.0, 32, 4, 32)
        seen.append(tuner.limit(4, 32))
    assert seen == [9, 8, 7, 6]  # the probe to 14 refused, then a slot fewer each epoch
