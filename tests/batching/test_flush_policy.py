"""The flush decision, driven with explicit times (no sleeping)."""

from __future__ import annotations

import math

import pytest

from batching.flush_policy import ArrivalRate, CallPressure, FlushLimits, FlushNow, WaitUntil, decide

LIMITS = FlushLimits(max_size=8, window_s=0.050)


@pytest.mark.parametrize(
    ("pending", "first", "now", "expected"),
    [
        (0, None, 10.0, None),
        (0, 10.0, 10.0, None),
        (1, 10.0, 10.0, WaitUntil(10.050)),
        (7, 10.0, 10.049, WaitUntil(10.050)),
        (7, 10.0, 10.050, FlushNow("deadline")),
        (3, 10.0, 11.0, FlushNow("deadline")),
        (8, 10.0, 10.0, FlushNow("size")),
        (9, 10.0, 10.001, FlushNow("size")),
    ],
)
def test_decide(pending: int, first: float | None, now: float, expected: object) -> None:
    assert decide(pending, first, now, LIMITS) == expected


def test_window_is_measured_from_the_first_request_not_the_latest() -> None:
    # Requests keep arriving; the deadline does not move.
    assert decide(2, 10.0, 10.030, LIMITS) == WaitUntil(10.050)
    assert decide(5, 10.0, 10.045, LIMITS) == WaitUntil(10.050)


def test_zero_window_flushes_immediately_and_huge_window_only_by_size() -> None:
    assert decide(1, 5.0, 5.0, FlushLimits(max_size=100, window_s=0.0)) == FlushNow("deadline")
    huge = FlushLimits(max_size=4, window_s=1e9)
    assert decide(3, 5.0, 1e6, huge) == WaitUntil(5.0 + 1e9)
    assert decide(4, 5.0, 5.0, huge) == FlushNow("size")


ADAPTIVE = FlushLimits(max_size=8, window_s=0.050, max_in_flight=2, safety_s=5.0)


def test_adaptive_flushes_at_once_while_a_slot_is_free() -> None:
    assert decide(1, 10.0, 10.0, ADAPTIVE, in_flight=0) == FlushNow("slot_free")
    assert decide(3, 10.0, 10.0, ADAPTIVE, in_flight=1) == FlushNow("slot_free")


def test_adaptive_keeps_filling_while_every_slot_is_busy() -> None:
    assert decide(3, 10.0, 10.2, ADAPTIVE, in_flight=2) == WaitUntil(15.0)  # no 50 ms window here
    assert decide(8, 10.0, 10.2, ADAPTIVE, in_flight=2) == FlushNow("size")
    assert decide(3, 10.0, 15.0, ADAPTIVE, in_flight=2) == FlushNow("deadline")  # the safety net
    assert decide(0, None, 10.0, ADAPTIVE, in_flight=2) is None


# The rent-or-buy rule: with a slot free, a batch waits while its requests' summed wait is
# below what one more call would cost them (its fixed CPU cost x busy / (1 - busy)).
FIXED = 0.004  # 4 ms of worker CPU per call


def test_on_an_idle_machine_a_call_costs_nobody_anything_so_a_lone_request_leaves_at_once() -> None:
    assert decide(1, 10.0, 10.0, ADAPTIVE, pressure=CallPressure(FIXED, busy=0.0)) == FlushNow("slot_free")
    assert decide(1, 10.0, 10.0, ADAPTIVE, pressure=CallPressure(0.0, busy=0.9)) == FlushNow("slot_free")


@pytest.mark.parametrize(
    ("busy", "cost"),
    [(0.0, 0.0), (0.5, 0.004), (0.75, 0.012), (0.8, 0.016), (0.9, math.inf), (1.7, math.inf)],
)
def test_what_a_call_costs_grows_as_the_cpu_fills(busy: float, cost: float) -> None:
    assert CallPressure(FIXED, busy).cost_s() == pytest.approx(cost)


def test_a_lone_request_waits_until_its_wait_pays_for_the_call() -> None:
    half_busy = CallPressure(FIXED, busy=0.5, arrival_rate=500)  # a call costs 4 ms of waiting
    assert decide(1, 10.0, 10.0, ADAPTIVE, pressure=half_busy) == WaitUntil(pytest.approx(10.004))
    assert decide(1, 10.0, 10.004, ADAPTIVE, waited_s=0.004, pressure=half_busy) == FlushNow("paid")


def test_newcomers_pay_the_wait_sooner() -> None:
    half_busy = CallPressure(FIXED, busy=0.5, arrival_rate=1000)
    # Two requests that waited 1 ms each still owe 2 ms, shared: 1 ms more.
    assert decide(2, 10.0, 10.001, ADAPTIVE, waited_s=0.002, pressure=half_busy) == WaitUntil(
        pytest.approx(10.002)
    )
    assert decide(3, 10.0, 10.002, ADAPTIVE, waited_s=0.0045, pressure=half_busy) == FlushNow("paid")


def test_on_a_saturated_cpu_requests_gather_but_never_past_the_window() -> None:
    saturated = CallPressure(FIXED, busy=0.97, arrival_rate=300)  # any wait pays: fill the batch
    assert decide(3, 10.0, 10.01, ADAPTIVE, waited_s=0.02, pressure=saturated) == WaitUntil(10.05)
    assert decide(3, 10.0, 10.05, ADAPTIVE, waited_s=0.1, pressure=saturated) == FlushNow("deadline")
    assert decide(8, 10.0, 10.01, ADAPTIVE, waited_s=0.02, pressure=saturated) == FlushNow("size")


def test_busy_slots_still_decide_before_the_cost() -> None:
    saturated = CallPressure(FIXED, busy=1.0)
    assert decide(3, 10.0, 10.2, ADAPTIVE, in_flight=2, waited_s=9.0, pressure=saturated) == WaitUntil(15.0)


def test_window_mode_ignores_costs() -> None:
    saturated = CallPressure(FIXED, busy=1.0)
    assert decide(1, 5.0, 5.0, LIMITS, waited_s=100.0, pressure=saturated) == WaitUntil(5.05)


def test_a_batch_waits_only_if_enough_newcomers_are_expected_within_the_cost() -> None:
    half_busy = {"fixed_cost_s": FIXED, "busy": 0.5}  # one more call costs 4 ms of waiting
    # A lone client (its next request comes after its answer: ~70 a second): 0.28 expected.
    assert decide(1, 10.0, 10.0, ADAPTIVE, pressure=CallPressure(**half_busy, arrival_rate=70)) == FlushNow(
        "slot_free"
    )
    # 300 a second: 1.2 newcomers expected, enough for one pending request, not for two.
    busy_300 = CallPressure(**half_busy, arrival_rate=300)
    assert isinstance(decide(1, 10.0, 10.0, ADAPTIVE, pressure=busy_300), WaitUntil)
    assert decide(2, 10.0, 10.0, ADAPTIVE, pressure=busy_300) == FlushNow("slot_free")


def test_the_arrival_rate_follows_a_steady_stream_and_decays_when_it_stops() -> None:
    rate = ArrivalRate(tau_s=1.0)
    assert rate.at(0.0) == 0.0
    for i in range(2000):  # 200 a second for 10 s
        rate.arrived(i * 0.005)
    assert rate.at(10.0) == pytest.approx(200, rel=0.01)
    assert rate.at(11.0) == pytest.approx(200 * math.exp(-1), rel=0.01)
    rate.arrived(11.0, count=50)
    assert rate.at(11.0) == pytest.approx(200 * math.exp(-1) + 50, rel=0.01)


def test_a_lone_client_on_a_machine_busy_with_other_work_waits_no_longer_than_the_window() -> None:
    saturated = CallPressure(FIXED, busy=1.0, arrival_rate=5)  # 0.5 expected in the 50 ms window
    assert decide(1, 10.0, 10.0, ADAPTIVE, pressure=saturated) == FlushNow("slot_free")
    busier = CallPressure(FIXED, busy=1.0, arrival_rate=40)  # 2 expected: the window is worth it
    assert decide(1, 10.0, 10.0, ADAPTIVE, pressure=busier) == WaitUntil(10.05)


def test_while_the_quota_holds_the_next_call_back_a_batch_keeps_filling_until_its_turn() -> None:
    queued = CallPressure(turn_at=12.0)  # calls queue for quota turns until 12.0
    assert decide(1, 10.0, 10.0, ADAPTIVE, in_flight=0, pressure=queued) == WaitUntil(12.0)
    assert decide(8, 10.0, 10.0, ADAPTIVE, in_flight=0, pressure=queued) == FlushNow("size")
    assert decide(3, 10.0, 12.0, ADAPTIVE, in_flight=0, pressure=queued) == FlushNow("slot_free")  # its turn
    assert decide(3, 10.0, 10.2, ADAPTIVE, in_flight=2, pressure=queued) == WaitUntil(15.0)  # slots first
    assert decide(1, 10.0, 10.0, LIMITS, pressure=queued) == WaitUntil(10.05)  # window mode: the window
