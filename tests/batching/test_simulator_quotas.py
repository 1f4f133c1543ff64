"""The simulator's Gemini quotas (RPM, TPM, RPD): pure rules driven by explicit time, then
what the unmodified google-genai SDK sees when one runs out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from google import genai
from google.genai import errors

from batching.daily_quota import PACIFIC, seconds_to_pacific_midnight
from batching.simulator import SimulatorThread
from batching.simulator.quotas import QUOTA_FAILURE_TYPE, Quotas
from tests.batching.sim_helpers import MODEL, configure, sim_stats

pytestmark = pytest.mark.usefixtures("baseline")

#: 2026-12-03 10:00 in Pacific time, as epoch seconds.
MORNING = datetime(2026, 12, 3, 10, 0, tzinfo=PACIFIC).timestamp()


def test_requests_per_minute_slide_over_sixty_seconds() -> None:
    quotas = Quotas()
    limits = {"rpm": 2, "tpm": 0, "rpd": 0}
    assert quotas.admit(0.0, MORNING, 10, **limits) is None
    assert quotas.admit(10.0, MORNING, 10, **limits) is None
    refused = quotas.admit(20.0, MORNING, 10, **limits)
    assert refused is not None and (refused.quota, refused.limit, refused.retry_delay_s) == ("rpm", 2, 40)
    assert quotas.admit(60.0, MORNING, 10, **limits) is None  # the first admission left the window


def test_input_tokens_per_minute_wait_for_enough_tokens_to_leave() -> None:
    quotas = Quotas()
    limits = {"rpm": 0, "tpm": 1000, "rpd": 0}
    assert quotas.admit(0.0, MORNING, 600, **limits) is None
    assert quotas.admit(5.0, MORNING, 300, **limits) is None
    refused = quotas.admit(10.0, MORNING, 400, **limits)  # 1,300 > 1,000 until the 600 leave at 60 s
    assert refused is not None and (refused.quota, refused.retry_delay_s) == ("tpm", 50)
    assert quotas.admit(10.0, MORNING, 100, **limits) is None  # a smaller call still fits
    assert quotas.admit(60.0, MORNING, 400, **limits) is None


def test_a_call_larger_than_the_whole_token_quota_is_slowed_not_stuck() -> None:
    quotas = Quotas()
    limits = {"rpm": 0, "tpm": 100, "rpd": 0}
    assert quotas.admit(0.0, MORNING, 500, **limits) is None
    refused = quotas.admit(1.0, MORNING, 500, **limits)
    assert refused is not None and refused.quota == "tpm"
    assert quotas.admit(61.0, MORNING, 500, **limits) is None


def test_the_day_quota_runs_out_until_midnight_pacific_and_comes_first() -> None:
    quotas = Quotas()
    limits = {"rpm": 1, "tpm": 0, "rpd": 2}
    assert quotas.admit(0.0, MORNING, 1, **limits) is None
    assert quotas.admit(100.0, MORNING + 100, 1, **limits) is None
    refused = quotas.admit(100.5, MORNING + 100.5, 1, **limits)  # the minute quota is spent too
    assert refused is not None and refused.quota == "rpd"
    assert refused.retry_delay_s == 14 * 3600 - 100  # 10:01:40 to midnight
    tomorrow = datetime(2026, 12, 4, 0, 0, 1, tzinfo=PACIFIC).timestamp()
    assert quotas.admit(50_000.0, tomorrow, 1, **limits) is None


def test_a_refused_call_counts_against_no_quota() -> None:
    quotas = Quotas()
    limits = {"rpm": 5, "tpm": 100, "rpd": 10}
    assert quotas.admit(0.0, MORNING, 100, **limits) is None
    for second in range(1, 4):
        refused = quotas.admit(float(second), MORNING, 50, **limits)
        assert refused is not None and refused.quota == "tpm"
    assert quotas.day.count == 1 and len(quotas.requests) == 1


def test_midnight_pacific_follows_daylight_saving() -> None:
    summer_evening = datetime(2026, 7, 1, 23, 0, tzinfo=PACIFIC).timestamp()
    assert seconds_to_pacific_midnight(summer_evening) == pytest.approx(3600)
    before_fall_back = datetime(2026, 11, 1, 0, 30, tzinfo=PACIFIC).timestamp()
    assert seconds_to_pacific_midnight(before_fall_back) == pytest.approx(24.5 * 3600)  # 25 h day


def _violation(error: errors.APIError) -> dict[str, Any]:
    details = error.details["error"]["details"]
    failures = [d for d in details if d.get("@type") == QUOTA_FAILURE_TYPE]
    assert len(failures) == 1 and any(d["@type"].endswith("RetryInfo") for d in details)
    violation: dict[str, Any] = failures[0]["violations"][0]
    return violation


def test_the_sdk_sees_which_quota_ran_out(client: genai.Client, sim: SimulatorThread) -> None:
    configure(sim, rpd=1, tpm=0, rpm=0)
    client.models.generate_content(model=MODEL, contents="one")
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model=MODEL, contents="two")
    assert (refused.value.code, refused.value.status) == (429, "RESOURCE_EXHAUSTED")
    violation = _violation(refused.value)
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel"
    assert violation["quotaValue"] == "1" and violation["quotaDimensions"]["model"] == MODEL

    configure(sim, rpd=0, tpm=5)
    with pytest.raises(errors.ClientError) as too_many_tokens:
        client.models.generate_content(model=MODEL, contents="a prompt of well over five tokens " * 3)
        client.models.generate_content(model=MODEL, contents="and another one just as long " * 3)
    assert _violation(too_many_tokens.value)["quotaId"] == "GenerateContentInputTokensPerModelPerMinute"
    stats = sim_stats(sim)
    assert stats["errors_by_code"] == {"429:rpd": 1, "429:tpm": 1}
    assert sum(stats["errors_by_code"].values()) == stats["errors"]
