"""``make quotatest``'s arithmetic: what a quota allows, and its refusals by quota."""

from __future__ import annotations

import pytest

from loadtest.quotatest import quota_429s, quota_allows_rps


def test_the_quota_allows_its_calls_times_the_items_they_carry() -> None:
    assert quota_allows_rps(300, 1.0) == pytest.approx(5.0)
    assert quota_allows_rps(300, 27.5) == pytest.approx(137.5)


def test_only_the_quotas_429s_are_counted_by_quota() -> None:
    assert quota_429s({"429:rpm": 3, "429:rpd": 1, "429": 2, "500": 4}) == {"rpm": 3, "rpd": 1}
    assert quota_429s({}) == {}
