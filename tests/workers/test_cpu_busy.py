"""The CPU busy share the adaptive flush policy reads: the larger of machine and process, smoothed."""

from __future__ import annotations

import pytest

from workers.cpu_busy import CpuBusy


def test_the_larger_of_the_machine_and_the_process_counts() -> None:
    busy = CpuBusy(half_life_s=1e-9)  # no smoothing
    # 1 s: the process used 0.9 s of CPU; the machine (2 cores) was 50 % busy.
    assert busy.update((0.0, 0.0, 0.0, 0.0), (1.0, 0.9, 1.0, 2.0)) == pytest.approx(0.9)
    # The process idle, the machine 80 % busy (someone else's work on it).
    assert busy.update((0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 1.6, 2.0)) == pytest.approx(0.8)


def test_one_busy_tick_moves_the_share_by_its_weight_only() -> None:
    busy = CpuBusy(half_life_s=1.0)
    busy.value = 0.2
    # A quarter second fully busy: weight 0.5 ** 0.25 for the old value.
    expected = 0.5**0.25 * 0.2 + (1 - 0.5**0.25) * 1.0
    assert busy.update((0.0, 0.0, 0.0, 0.0), (0.25, 0.25, 0.5, 0.5)) == pytest.approx(expected)


def test_real_samples_stay_between_0_and_1() -> None:
    busy = CpuBusy()
    for now in (0.0, 0.25, 0.5):
        assert 0.0 <= busy.sample(now) <= 1.0
