"""PerformanceBaseline: capture from metric slots, JSON round trip, schema, refusals."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from baseline.capture import CaptureError, capture, whole_slots
from baseline.histogram import counts_of, percentile
from baseline.model import SCHEMA_VERSION, BaselineError, PerformanceBaseline, schema
from baseline.slots import SLOT_S, STAGES, SlotData
from baseline.snapshots import LATEST, load_latest, write_snapshot

SETTINGS = {"model": "gemini-2.5-flash", "batch_max_size": 32, "batch_window_ms": 100.0}


def slot(rng: random.Random, n: int = 100) -> SlotData:
    data = SlotData()
    for stage, median in zip(STAGES, (2.0, 100.0, 500.0, 610.0), strict=True):
        data.histograms[stage] = counts_of(rng.lognormvariate(0, 0.2) * median for _ in range(n))
    data.counters = Counter({"succeeded": n, "input_tokens": 30 * n, "output_tokens": 80 * n})
    data.batch_sizes = Counter({20: n})
    return data


def make_baseline(seed: int = 1) -> PerformanceBaseline:
    rng = random.Random(seed)
    slots = {s: slot(rng) for s in range(100, 106)}
    return capture(
        slots,
        100 * SLOT_S,
        106 * SLOT_S,
        settings=SETTINGS,
        load={"source": "test", "clients": 16},
        created_at=1_700_000_000.0,
        git_revision="abc123",
        inflection={"users": 80},
    )


def test_capture_uses_whole_slots_only() -> None:
    assert whole_slots(1005.0, 1060.0) == [101, 102, 103, 104, 105]
    assert whole_slots(1000.0, 1009.9) == []
    with pytest.raises(CaptureError, match="no whole"):
        capture({}, 1000.0, 1005.0, settings={}, load={}, created_at=0.0, git_revision="x")


def test_capture_summarises_the_window() -> None:
    base = make_baseline()
    assert base.sample_count == 600 and base.stages["model"].count == 600
    assert base.throughput_rps == 10.0 and base.tokens_per_s == 1100.0
    assert base.batch_sizes == {20: 600}
    assert base.load["window_s"] == 60.0 and base.load["clients"] == 16
    p95 = base.stages["end_to_end"].percentiles_ms["p95"]
    assert p95 == pytest.approx(percentile(base.stages["end_to_end"].histogram, 0.95), abs=1e-3)
    assert 610 < p95 < 610 * 1.6
    with pytest.raises(CaptureError, match="only 600 requests"):
        capture(
            {100: slot(random.Random(2), 600)},
            1000.0,
            1010.0,
            settings={},
            load={},
            created_at=0.0,
            git_revision="x",
            min_samples=601,
        )


def test_json_round_trip_and_schema() -> None:
    base = make_baseline()
    data = json.loads(base.to_json())
    jsonschema.validate(data, schema())  # the shipped schema accepts what we write
    again = PerformanceBaseline.from_json(base.to_json())
    assert again == base
    assert data["schema_version"] == SCHEMA_VERSION and len(data["settings_fingerprint"]) == 64
    assert data["stages"]["end_to_end"]["percentiles_ms"]["p999"] is not None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this batchgate reads"),
        (lambda d: d.pop("stages"), "'stages' is a required property"),
        (lambda d: d["stages"]["end_to_end"]["histogram"].update({"x": 1}), "stages/end_to_end/histogram"),
        (lambda d: d["stages"]["model"].update(count=-1), "stages/model/count"),
        (lambda d: d["settings"].update(batch_max_size=64), "fingerprint does not match"),
    ],
)
def test_invalid_or_newer_files_are_refused_clearly(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(make_baseline().to_json())
    mutate(data)
    with pytest.raises(BaselineError, match=message):
        PerformanceBaseline.from_json(json.dumps(data))


def test_a_corrupt_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(make_baseline().to_json()[:200])
    with pytest.raises(BaselineError, match=r"broken\.json is not valid JSON"):
        PerformanceBaseline.load_file(path)
    with pytest.raises(BaselineError, match="cannot read"):
        PerformanceBaseline.load_file(tmp_path / "absent.json")


def test_snapshots_and_the_latest_pointer(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no baseline yet"):
        load_latest(tmp_path)
    first = write_snapshot(make_baseline(1), tmp_path)
    second = write_snapshot(make_baseline(2), tmp_path)  # same creation time: a second file
    assert first != second and first.exists() and second.exists()
    assert (tmp_path / LATEST).resolve() == second.resolve()
    assert load_latest(tmp_path) == make_baseline(2)
