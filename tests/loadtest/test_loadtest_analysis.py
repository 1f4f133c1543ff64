"""The load test's pure parts: inflection analysis on synthetic curves, queue-depth samples,
the LOADTEST_* settings and the shipped corpus. No Locust import (it monkey-patches the process)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import pytest

from api.schemas import parse_task_request
from batchgate.response_cache import is_time_sensitive
from batchgate.settings import Settings
from loadtest.corpus import HOT_ITEMS, VARIANTS, build_request
from loadtest.corpus_prompts import CORPUS
from loadtest.inflection import (
    Criteria,
    DepthSample,
    StepPoint,
    analyse,
    depth_summary,
    find_inflection,
    find_saturation,
)
from loadtest.settings import LoadSettings, LoadSettingsError

USERS = (5, 10, 20, 40, 80, 160)


def curve(
    p95: Sequence[float | None],
    throughput: Sequence[float] | None = None,
    queue: Sequence[tuple[float, float, float]] | None = None,
) -> list[dict[str, Any]]:
    """Step rows as the shape writes them; ``queue`` holds (first, last, mean) per step."""
    rows = []
    for i, value in enumerate(p95):
        first, last, mean = queue[i] if queue else (0, 0, 0)
        rows.append(
            {
                "index": i,
                "users": USERS[i],
                "throughput_rps": throughput[i] if throughput else 10.0 * USERS[i],
                "p50_ms": None if value is None else value * 0.8,
                "p95_ms": value,
                "queue_depth_first": first,
                "queue_depth_last": last,
                "queue_depth_mean": mean,
                "queue_depth_max": max(first, last, mean),
                "unrelated_column": "ignored",
            }
        )
    return rows


def test_a_stack_that_keeps_up_has_no_inflection() -> None:
    analysis = analyse(curve([300, 310, 305, 330, 340, 350]))
    assert analysis.inflection is None
    assert analysis.baseline_p95_ms == 305  # median of the first two: (300 + 310) / 2


def test_the_latency_knee_is_the_first_step_beyond_the_factor() -> None:
    inflection = find_inflection([StepPoint.from_row(r) for r in curve([300, 320, 360, 470, 900, 2400])])
    assert inflection is not None
    # baseline 310 ms; 1.5 x 310 = 465: 360 is below, 470 above
    assert (inflection.step_index, inflection.users, inflection.reason) == (3, 40, "latency_knee")
    assert inflection.throughput_rps == 400.0 and inflection.baseline_p95_ms == 310


def test_a_growing_queue_marks_the_inflection_before_latency_moves() -> None:
    queue = [(0, 0, 0), (0, 0, 0), (0, 40, 18), (40, 300, 160), (300, 900, 600), (900, 2000, 1500)]
    inflection = find_inflection(
        [StepPoint.from_row(r) for r in curve([300, 300, 320, 700, 1500, 3000], queue=queue)]
    )
    assert inflection is not None
    assert (inflection.users, inflection.reason, inflection.queue_growth) == (20, "queue_growth", 40)


def test_both_conditions_at_one_step_are_both_named() -> None:
    queue = [(0, 0, 0), (0, 0, 0), (0, 0, 0), (10, 200, 90), (0, 0, 0), (0, 0, 0)]
    inflection = find_inflection(
        [StepPoint.from_row(r) for r in curve([300, 300, 320, 800, 1600, 3200], queue=queue)]
    )
    assert inflection is not None and inflection.reason == "queue_growth+latency_knee"


@pytest.mark.parametrize(
    ("first", "last", "mean"),
    [
        (0, 8, 4),  # grows, but by no more than the threshold
        (2, 30, 4),  # grows, but the step's mean depth is below the floor
        (500, 480, 490),  # deep but draining: a standing queue, not growth
    ],
)
def test_small_or_shrinking_queues_are_not_growth(first: float, last: float, mean: float) -> None:
    queue = [(0, 0, 0), (0, 0, 0), (first, last, mean), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
    assert find_inflection([StepPoint.from_row(r) for r in curve([300] * 6, queue=queue)]) is None


def test_millisecond_jitter_at_low_latency_is_not_a_knee() -> None:
    # 3x the baseline, but only 20 ms above it: under the 25 ms margin.
    assert find_inflection([StepPoint.from_row(r) for r in curve([10, 10, 12, 30, 30, 30])]) is None
    # The same curve with no margin has a knee at the first step above 15 ms.
    strict = Criteria(min_knee_delta_ms=0)
    inflection = find_inflection([StepPoint.from_row(r) for r in curve([10, 10, 12, 30, 30, 30])], strict)
    assert inflection is not None and inflection.users == 40


def test_a_step_where_nothing_finished_counts_as_departed() -> None:
    inflection = find_inflection([StepPoint.from_row(r) for r in curve([300, 300, 330, None, None, None])])
    assert inflection is not None and (inflection.users, inflection.reason) == (40, "no_completions")


def test_no_baseline_no_latency_knee() -> None:
    assert (
        find_inflection([StepPoint.from_row(r) for r in curve([None, None, 5000, 9000, 9000, 9000])]) is None
    )


def test_saturation_is_the_highest_throughput_and_where_its_plateau_starts() -> None:
    points = [StepPoint.from_row(r) for r in curve([300] * 6, throughput=[50, 100, 190, 240, 250, 245])]
    saturation = find_saturation(points)
    assert saturation is not None
    assert (saturation.throughput_rps, saturation.users) == (250, 80)
    assert saturation.plateau_from_step == 3  # 240 >= 0.9 x 250
    assert saturation.saturated


def test_throughput_still_rising_at_the_last_step_is_a_lower_bound() -> None:
    points = [StepPoint.from_row(r) for r in curve([300] * 6, throughput=[50, 100, 200, 400, 800, 1600])]
    saturation = find_saturation(points)
    assert saturation is not None and saturation.users == 160 and not saturation.saturated
    assert find_saturation([]) is None


def test_the_analysis_serialises_to_json() -> None:
    analysis = analyse(curve([300, 320, 360, 470, 900, 2400], throughput=[50, 100, 190, 240, 250, 245]))
    data = json.loads(json.dumps(analysis.to_dict()))
    assert data["inflection"]["users"] == 40
    assert data["saturation"]["throughput_rps"] == 250
    assert data["criteria"]["knee_factor"] == 1.5


def test_depth_summary_counts_each_published_snapshot_once() -> None:
    samples = [
        DepthSample(at=1.0, depth=0, generated_at=100.0),
        DepthSample(at=2.0, depth=0, generated_at=100.0),  # the same snapshot read again
        DepthSample(at=3.0, depth=30, generated_at=102.0),
        DepthSample(at=4.0, depth=90, generated_at=104.0),
    ]
    assert depth_summary(samples) == {
        "queue_depth_samples": 3,
        "queue_depth_first": 0,
        "queue_depth_last": 90,
        "queue_depth_mean": 40.0,
        "queue_depth_max": 90,
    }
    assert depth_summary([])["queue_depth_mean"] is None


def test_load_settings_from_an_explicit_environment() -> None:
    settings = LoadSettings.from_env(
        {
            "LOADTEST_STEPS": "2, 4,8",
            "LOADTEST_STEP_S": "3",
            "LOADTEST_WARMUP_S": "1",
            "LOADTEST_REPEAT_SHARE": "",
        }
    )
    assert settings.steps == (2, 4, 8) and settings.step_s == 3.0 and settings.duration_s == 9.0
    assert settings.repeat_share == LoadSettings().repeat_share  # empty = default
    assert LoadSettings.from_env(settings.to_env()) == settings
    assert LoadSettings(api_key="secret").public()["api_key"] == "(set)"


def test_a_command_line_option_beats_its_variable_as_in_locust() -> None:
    env = {"LOADTEST_THINK_S": "1", "LOADTEST_SYNC_SHARE": "0.25"}
    settings = LoadSettings.from_args(["--think-s", "2", "--steps", "3,6"], env)
    assert (settings.think_s, settings.steps, settings.sync_share) == (2.0, (3, 6), 0.25)


@pytest.mark.parametrize(
    "env",
    [
        {"LOADTEST_STEPS": "0,5"},
        {"LOADTEST_STEPS": "a,b"},
        {"LOADTEST_STEP_S": "10", "LOADTEST_WARMUP_S": "10"},
        {"LOADTEST_REPEAT_SHARE": "1.5"},
    ],
)
def test_bad_load_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(LoadSettingsError):
        LoadSettings.from_env(env)


def test_the_corpus_is_varied_valid_and_cacheable() -> None:
    settings = Settings()
    assert len(CORPUS) >= 40
    assert len({item.kind for item in CORPUS}) >= 6
    lengths = sorted(len(json.dumps(item.body())) for item in CORPUS)
    assert lengths[0] < 150 and lengths[-1] > 1000  # short and long requests
    for item in CORPUS:
        texts = (item.prompt, json.dumps(item.context or {}, ensure_ascii=False))
        assert not is_time_sensitive(texts, settings.edge.bypass_words), (
            item.prompt
        )  # repeats must hit the cache
        assert settings.simulator.poison_marker not in "".join(texts)


def test_requests_follow_the_repeat_and_settings_shares() -> None:
    rng = random.Random(7)
    kinds = [build_request(rng, 0.1, 0.2, f"ref-{i}")[0] for i in range(4000)]
    assert 0.08 < kinds.count("repeat") / 4000 < 0.12
    assert 0.15 < kinds.count("variant") / 4000 < 0.21  # 20 % of the 90 % that are not repeats

    repeats = {json.dumps(build_request(rng, 1.0, 1.0, f"r{i}")[1], sort_keys=True) for i in range(200)}
    assert len(repeats) == len(HOT_ITEMS)  # verbatim: the same few bodies, so cache hits

    _, unique = build_request(random.Random(1), 0.0, 0.0, "ref-42")
    assert unique["context"]["request_ref"] == "ref-42" and unique["generation"] == {"temperature": 0.2}
    variants = {json.dumps(build_request(rng, 0.0, 1.0, "x")[1].get("generation")) for _ in range(200)}
    assert len(variants) == len({json.dumps(v.get("generation", {"temperature": 0.2})) for v in VARIANTS})


def test_every_request_the_mix_builds_passes_the_api_validation() -> None:
    settings = Settings()
    rng = random.Random(3)
    for i in range(300):
        _, body = build_request(rng, 0.3, 0.5, f"ref-{i}")
        parse_task_request(body, settings.api.max_prompt_chars, settings.api.max_context_chars)
