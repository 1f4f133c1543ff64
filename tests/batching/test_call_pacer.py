"""The call pacer keeps model calls under an RPM quota, in order, without sleeping in tests."""

from __future__ import annotations

import pytest

from batching.call_pacer import CallPacer


def test_no_quota_never_waits() -> None:
    pacer = CallPacer(0)
    assert [pacer.reserve(0.0) for _ in range(1000)] == [0.0] * 1000


def test_a_burst_beyond_one_second_of_quota_queues_in_order() -> None:
    pacer = CallPacer(120)  # 2 calls/s, burst 2
    waits = [pacer.reserve(10.0) for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])


def test_calls_started_at_their_turns_never_exceed_the_quota_in_any_minute() -> None:
    pacer = CallPacer(300)
    starts = sorted(10.0 + pacer.reserve(10.0) for _ in range(2000))  # 2,000 calls at once
    for i, start in enumerate(starts):
        later = [s for s in starts[i : i + 400] if s < start + 60]
        assert len(later) <= 300 + pacer.burst  # the quota, plus the one-second burst
    assert starts[-1] - starts[0] == pytest.approx((2000 - pacer.burst) / 5)


def test_the_bucket_refills_while_quiet_but_only_up_to_its_burst() -> None:
    pacer = CallPacer(60)  # 1 call/s, burst 1
    assert pacer.reserve(0.0) == 0.0
    assert pacer.reserve(0.0) == pytest.approx(1.0)
    assert pacer.reserve(100.0) == 0.0  # long quiet: full again, but only one call's worth
    assert pacer.reserve(100.0) == pytest.approx(1.0)


def test_a_negative_quota_is_refused() -> None:
    with pytest.raises(ValueError):
        CallPacer(-1)


def test_input_tokens_are_paced_to_the_tpm_quota_and_corrected_after() -> None:
    pacer = CallPacer(0, tpm=60_000)  # 1,000 tokens a second, a second's worth at once
    assert pacer.reserve(0.0, "m", 1000) == 0.0
    assert pacer.reserve(0.0, "m", 500) == pytest.approx(0.5)
    pacer.settle("m", 500, 100)  # Gemini counted fewer: the difference comes back
    assert pacer.reserve(0.0, "m", 400) == pytest.approx(0.5)
    pacer.settle("m", 400, 1400)  # and more: the next call waits for them
    assert pacer.reserve(0.0, "m", 100) == pytest.approx(1.6)


def test_the_slower_of_rpm_and_tpm_decides_the_wait() -> None:
    pacer = CallPacer(60, tpm=6_000)  # one call and 100 tokens a second
    assert pacer.reserve(0.0, "m", 10) == 0.0
    assert pacer.reserve(0.0, "m", 10) == pytest.approx(1.0)  # RPM binds
    assert pacer.reserve(0.0, "m", 500) == pytest.approx(4.2)  # TPM binds: 420 tokens short
