"""PerformanceBaseline: an immutable, versioned fingerprint of healthy-state latency.

The drift signal (``baseline.drift``) and the next stage of the pipeline consume it, so it
travels as JSON that validates against the shipped schema
(``baseline/schema/performance_baseline.schema.json``). Histograms use the metrics' fixed
bucket edges (``baseline.histogram``), so a baseline compares bucket by bucket with any
live window. Loading refuses a corrupt file, a file that breaks the schema and a file of a
newer schema version, each with a message that says which.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from baseline import histogram

#: Version of the JSON layout this code writes; it reads this one and older.
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("schema") / "performance_baseline.schema.json"
#: Percentiles kept per stage (q in 0..1, named as in the JSON).
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class BaselineError(ValueError):
    """A baseline that cannot be used: corrupt, invalid, or from a newer schema."""


@dataclass(frozen=True)
class StageLatency:
    """One stage's latency: its histogram (bucket index → count) and percentiles (ms)."""

    histogram: Mapping[int, int]
    percentiles_ms: Mapping[str, float | None]

    @classmethod
    def of(cls, counts: Mapping[int, int]) -> StageLatency:
        kept = {int(b): int(n) for b, n in sorted(counts.items()) if n > 0}
        return cls(kept, {name: _round(histogram.percentile(kept, q)) for name, q in PERCENTILES.items()})

    @property
    def count(self) -> int:
        return sum(self.histogram.values())


@dataclass(frozen=True)
class PerformanceBaseline:
    """What healthy looked like: per-stage latency, throughput and batching at a known load."""

    created_at: float
    git_revision: str
    #: The settings that shape latency (model, batching, replicas, workers, cost model).
    settings: Mapping[str, Any]
    #: How it was taken: ``{"source": ..., "window_s": ..., "clients": ..., ...}``.
    load: Mapping[str, Any]
    stages: Mapping[str, StageLatency]
    throughput_rps: float
    tokens_per_s: float
    batch_sizes: Mapping[int, int]
    #: The load test's inflection point, when one was found before the capture.
    inflection: Mapping[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sample_count(self) -> int:
        """Requests behind the baseline (the end-to-end stage's count)."""
        stage = self.stages.get("end_to_end")
        return stage.count if stage else 0

    @property
    def settings_fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of ``settings``: equal settings, equal fingerprint."""
        return settings_fingerprint(self.settings)

    def histograms(self) -> dict[str, Mapping[int, int]]:
        """Per-stage histograms, as the drift signal takes them."""
        return {name: stage.histogram for name, stage in self.stages.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created_at": self.created_at,
            "git_revision": self.git_revision,
            "settings_fingerprint": self.settings_fingerprint,
            "settings": dict(self.settings),
            "load": dict(self.load),
            "sample_count": self.sample_count,
            "histogram_buckets": {
                "min_ms": histogram.MIN_MS,
                "growth": histogram.GROWTH,
                "rule": "bucket i >= 1 covers [min_ms * growth^(i-1), min_ms * growth^i); 0 is below min_ms",
            },
            "stages": {
                name: {
                    "count": stage.count,
                    "percentiles_ms": dict(stage.percentiles_ms),
                    "histogram": {str(b): n for b, n in stage.histogram.items()},
                }
                for name, stage in self.stages.items()
            },
            "throughput_rps": self.throughput_rps,
            "tokens_per_s": self.tokens_per_s,
            "batch_sizes": {str(size): n for size, n in sorted(self.batch_sizes.items())},
            "inflection": None if self.inflection is None else dict(self.inflection),
            "notes": self.notes,
            "extra": dict(self.extra),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> PerformanceBaseline:
        """Check ``data`` against the schema (and its version), then build the baseline."""
        if not isinstance(data, dict):
            raise BaselineError("a baseline is a JSON object")
        version = data.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise BaselineError(
                f"baseline schema version {version} is newer than this batchgate reads "
                f"({SCHEMA_VERSION}); upgrade batchgate or capture a new baseline"
            )
        try:
            jsonschema.validate(data, schema())
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
            raise BaselineError(f"baseline does not match its schema at {where}: {exc.message}") from None
        fingerprint = settings_fingerprint(data["settings"])
        if data["settings_fingerprint"] != fingerprint:
            raise BaselineError(
                "baseline settings_fingerprint does not match its settings (edited or corrupt)"
            )
        return cls(
            created_at=float(data["created_at"]),
            git_revision=data["git_revision"],
            settings=data["settings"],
            load=data["load"],
            stages={
                name: StageLatency(
                    {int(b): int(n) for b, n in stage["histogram"].items()}, stage["percentiles_ms"]
                )
                for name, stage in data["stages"].items()
            },
            throughput_rps=float(data["throughput_rps"]),
            tokens_per_s=float(data["tokens_per_s"]),
            batch_sizes={int(size): int(n) for size, n in data["batch_sizes"].items()},
            inflection=data.get("inflection"),
            schema_version=data["schema_version"],
            notes=data.get("notes", ""),
            extra=data.get("extra", {}),
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "baseline") -> PerformanceBaseline:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BaselineError(f"{source} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except BaselineError as exc:
            raise BaselineError(f"{source}: {exc}") from None

    @classmethod
    def load_file(cls, path: Path) -> PerformanceBaseline:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise BaselineError(f"cannot read baseline {path}: {exc.strerror}") from None
        return cls.from_json(text, str(path))


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema() -> dict[str, Any]:
    """The published JSON Schema of a baseline file."""
    return json.loads(SCHEMA_PATH.read_text())  # type: ignore[no-any-return]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
