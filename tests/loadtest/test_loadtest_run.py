"""``make loadtest`` end to end with a tiny ladder: it starts its own stack on free ports, runs
Locust with the step shape, writes the report folder and stops the stack; plus the plot and
summary from a synthetic step table."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from loadtest.cpu_watch import contention
from loadtest.inflection import analyse
from loadtest.report import generator_verdict, plot, summary
from loadtest.run import main
from stack.cluster import port_in_use
from tests.conftest import stack_env
from tests.harness import free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def loadtest_env(redis_url: str, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A stack on free ports sharing the session's Redis, and a three-step ladder of 4 s."""
    env = stack_env(
        redis_url,
        BATCHGATE_API_PORTS=",".join(str(free_port()) for _ in range(3)),
        BATCHGATE_NGINX_PORT=str(free_port()),
        BATCHGATE_NGINX_TLS_PORT=str(free_port()),
        BATCHGATE_FLOWER_PORT=str(free_port()),
        BATCHGATE_SIM_PORT=str(free_port()),
        BATCHGATE_RUN_DIR=str(tmp_path / "run"),
        BATCHGATE_FLOWER_AUTH="ops:test-password",
    )
    # run.py raises the premium tier itself for the stack it starts: leave that to it.
    for name in (
        "BATCHGATE_TIER_PREMIUM_RATE",
        "BATCHGATE_TIER_PREMIUM_BURST",
        "BATCHGATE_TIER_PREMIUM_MAX_IN_FLIGHT",
    ):
        env.pop(name, None)
    env = {k: v for k, v in env.items() if not k.startswith("LOADTEST_")}
    env.update(
        LOADTEST_STEPS="2,5,10",
        LOADTEST_STEP_S="4",
        LOADTEST_WARMUP_S="1",
        LOADTEST_THINK_S="0.2",
        LOADTEST_METRICS_INTERVAL_S="0.5",
        LOADTEST_REPORTS_DIR=str(tmp_path / "reports"),
    )
    env.update(overrides)
    return env


@pytest.mark.timeout(90)
def test_make_loadtest_writes_the_report_folder_and_stops_its_stack(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = loadtest_env(redis_url, tmp_path)

    assert main([], environ=env) == 0

    printed = capsys.readouterr().out
    assert "inflection:" in printed and "saturation throughput:" in printed and "cost: " in printed
    (folder,) = (tmp_path / "reports").iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert report["run"]["ok"] and report["run"]["complete"]
    assert [s["users"] for s in report["steps"]] == [2, 5, 10]
    for step in report["steps"]:
        assert step["tasks_finished"] > 0 and step["tasks_failed"] == 0, step
        assert step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"]
        assert step["reject_rate"] == 0.0
        assert step["queue_depth_samples"] >= 1 and step["queue_depth_mean"] is not None, step
    assert "inflection" in report  # None when the stack kept up, as it should at 10 users
    assert report["saturation"]["throughput_rps"] > 0
    assert report["target"]["stack_started_here"]
    assert "raised" in " ".join(report["target"]["notes"])
    assert report["settings"]["stack"]["edge"]["tier_premium_rate"] == 1_000_000
    assert report["settings"]["stack"]["edge"]["demo_api_key"] == "(set)"  # never the key itself
    assert report["settings"]["simulator"]["overhead_ms"] == 30.0
    assert report["settings"]["loadtest"]["steps"] == [2, 5, 10]
    assert report["generator"]["locust_cpu_percent_run"] is not None
    cost = report["cost"]  # the tenant's usage over the run, read with batchgate_client
    assert cost["requests"] >= sum(s["tasks_finished"] for s in report["steps"]) and cost["failures"] == 0
    assert cost["input_tokens"] > 0 and cost["output_tokens"] > 0 and cost["cost_usd"] > 0
    assert cost["cost_usd_per_1k_requests"] == pytest.approx(
        1000 * cost["cost_usd"] / cost["requests"], rel=1e-3
    )
    assert all(
        s["test_cpu_percent"] is not None and s["other_cpu_percent"] is not None for s in report["steps"]
    )

    png = (folder / "plot.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    with Image.open(folder / "plot.png") as image:
        image.verify()
        assert image.size[0] > 500 and image.size[1] > 500
    with (folder / "steps.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert (folder / "locust_stats_history.csv").exists()
    # The stack it started is gone again.
    assert not port_in_use("127.0.0.1", int(env["BATCHGATE_NGINX_PORT"]))


def test_a_target_that_does_not_answer_fails_the_run(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = loadtest_env(redis_url, tmp_path, LOADTEST_HOST=f"http://127.0.0.1:{free_port()}")
    assert main([], environ=env) == 1
    assert "nothing answers at LOADTEST_HOST" in capsys.readouterr().err


def synthetic_steps() -> list[dict[str, Any]]:
    users = [5, 10, 20, 40, 80, 160]
    p95 = [300, 310, 330, 520, 1400, 3900]
    queue = [(0, 0, 0), (0, 0, 0), (0, 2, 1), (5, 60, 30), (60, 400, 220), (400, 900, 700)]
    return [
        {
            "index": i,
            "users": u,
            "throughput_rps": min(16.0 * u, 700.0),
            "submitted_rps": min(16.5 * u, 720.0),
            "p50_ms": p95[i] * 0.8,
            "p95_ms": p95[i],
            "p99_ms": p95[i] * 1.3,
            "error_rate": 0.0 if i < 5 else 0.02,
            "reject_rate": 0.0,
            "queue_depth_first": queue[i][0],
            "queue_depth_last": queue[i][1],
            "queue_depth_mean": queue[i][2],
            "queue_depth_max": queue[i][1],
            "locust_cpu_percent": 10.0 * (i + 1),
        }
        for i, u in enumerate(users)
    ]


def test_the_plot_marks_the_inflection_and_the_summary_states_it(tmp_path: Path) -> None:
    steps = synthetic_steps()
    analysis = analyse(steps)
    assert analysis.inflection is not None and analysis.inflection.users == 40

    path = plot(steps, analysis, tmp_path / "plot.png", title="synthetic")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with Image.open(path) as image:
        assert image.size[0] > 500

    # A step without completions and without queue samples still plots.
    steps[5].update(p50_ms=None, p95_ms=None, p99_ms=None, queue_depth_mean=None, queue_depth_max=None)
    plot(steps, analyse(steps), tmp_path / "sparse.png")
    assert (tmp_path / "sparse.png").stat().st_size > 0

    report = {
        "target": {"description": "synthetic"},
        "steps": synthetic_steps(),
        **analysis.to_dict(),
        "generator": generator_verdict(synthetic_steps(), cpu_warning=False, run_cpu_percent=35.0),
    }
    text = summary(report)
    assert "inflection: step 3 (40 users)" in text
    assert "saturation throughput: 700.0 tasks/s" in text
    assert "BOTTLENECK" not in text


def test_a_busy_generator_is_reported_as_a_possible_bottleneck() -> None:
    steps = synthetic_steps()
    steps[5]["locust_cpu_percent"] = 97.0
    verdict = generator_verdict(steps, cpu_warning=False, run_cpu_percent=60.0)
    assert verdict["bottleneck"] and verdict["busy_steps"] == [5]
    assert generator_verdict(synthetic_steps(), cpu_warning=True, run_cpu_percent=None)["bottleneck"]


def test_steps_run_beside_a_busy_neighbour_are_flagged_as_contended() -> None:
    steps: list[dict[str, Any]] = [
        {"index": 0, "other_cpu_percent": 3.0},
        {"index": 1, "other_cpu_percent": 45.0, "other_top": [{"name": "gunicorn", "cpu_percent": 30.0}]},
        {"index": 2},
    ]
    verdict = contention(steps)
    assert verdict["contended_steps"] == [1] and verdict["other_cpu_percent_max"] == 45.0
    assert verdict["contenders"] == ["gunicorn"]
    assert contention([{"index": 0, "other_cpu_percent": 2.0}])["contended_steps"] == []
