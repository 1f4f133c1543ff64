"""Latency drift: does live latency, stage by stage, differ from a baseline enough to act on?

The judgement comes in parts, each in its own module:

* ``baseline.drift_thresholds``: the statuses (ok < warn < drift; insufficient_data says
  nothing) and the ``DriftThresholds`` that decide them;
* ``baseline.ks``: the binned two-sample Kolmogorov-Smirnov test (has the distribution changed
  at all?), counting batches rather than requests;
* ``baseline.stage_drift``: one stage's verdict, KS plus an effect-size guard on the p50 and
  p95 ratios (is it off by enough to matter?), with what was measured of its false alarms,
  power and blind spot;
* ``baseline.traffic``: the load behind each side, so a verdict says when the live load is
  not the baseline's;
* this module: the signal, every stage judged and hysteresis over the previous result.

An evaluation's ``raw_status`` is its worst stage (ok < warn < drift); it is
``insufficient_data`` only when every stage is. ``consecutive`` counts the evaluations in a
row, this one included, with this ``raw_status`` (any other raw status breaks the run). The
reported ``status`` then follows, given the previous result's ``status``:

* raw drift: drift if the previous status was drift or ``consecutive >= enter_after``,
  else warn (a first sighting is a warning, not yet an alarm);
* raw warn: drift if the previous status was drift, else warn (warn passes straight through);
* raw ok: drift if the previous status was drift and ``consecutive < exit_after``, else ok;
* raw insufficient_data: drift if the previous status was drift (no leaving drift for lack
  of data), else insufficient_data.

``drifted_stages`` names the stages whose raw status is drift, and, when ``status`` is warn
or drift, also those whose raw status is warn (so a drift held by hysteresis still names the
stages that are off). It is empty when no stage is off now. Every stage carries the test
that decided it (``decided_by``) and a sentence saying why (``reason``); the result says
why it holds its status (``reason``) and, in ``hysteresis``, how many evaluations in a row
are still needed to enter or leave drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baseline.drift_thresholds import DRIFT, OK, SEVERITY, WARN, DriftThresholds, check_status
from baseline.stage_drift import StageDrift, compare_stage
from baseline.traffic import LoadComparison, Traffic, compare_load

# The signal's public surface: what it is built with, reads and returns.
__all__ = ["DriftResult", "DriftThresholds", "LatencyDriftSignal", "Traffic", "settle"]

#: The thresholds a signal built without any uses (frozen, so one instance serves every signal).
DEFAULT_THRESHOLDS = DriftThresholds()


@dataclass(frozen=True)
class DriftResult:
    """One evaluation; passed back in as ``previous``, it is all the state hysteresis needs."""

    #: Overall status after hysteresis.
    status: str
    #: Overall status of this evaluation alone.
    raw_status: str
    #: Stages whose raw status is drift (and warn, when ``status`` is warn).
    drifted_stages: tuple[str, ...]
    stages: tuple[StageDrift, ...]
    #: Wall-clock seconds: results are shared between processes, so monotonic time won't do.
    evaluated_at: float
    #: Evaluations in a row, this one included, with this ``raw_status``.
    consecutive: int
    thresholds: DriftThresholds
    #: The live load beside the baseline's (None when either is unknown).
    load: LoadComparison | None = None

    def __post_init__(self) -> None:
        check_status(self.status)
        check_status(self.raw_status)
        if self.consecutive < 1:
            raise ValueError("consecutive counts this evaluation, so it is at least 1")

    @property
    def hysteresis(self) -> dict[str, Any]:
        """Where the signal stands between raw verdicts and status, and what would move it."""
        t = self.thresholds
        entering = self.status == WARN and self.raw_status == DRIFT
        held = self.status == DRIFT and self.raw_status != DRIFT
        ok_in_a_row = self.consecutive if self.raw_status == OK else 0
        return {
            "held": held,
            "entering": entering,
            "raw_in_a_row": self.consecutive,
            "drift_needed": t.enter_after - self.consecutive if entering else 0,
            "ok_in_a_row": ok_in_a_row,
            "ok_needed": t.exit_after - ok_in_a_row if held else 0,
            "enter_after": t.enter_after,
            "exit_after": t.exit_after,
        }

    @property
    def reason(self) -> str:
        """Why the signal says what it says, in a sentence or three."""
        t, h = self.thresholds, self.hysteresis
        off = [s for s in self.stages if s.status in (WARN, DRIFT)]
        detail = "; ".join(f"{s.stage}: {s.reason}" for s in off)
        if h["entering"]:
            text = (
                f"warn: drifted in {self.consecutive} evaluation(s) in a row, drift after "
                f"{h['drift_needed']} more (enter_after {t.enter_after}). {detail}"
            )
        elif h["held"]:
            needs = f"{h['ok_needed']} more ok evaluation(s) in a row needed to return to ok (exit_after {t.exit_after})"
            if self.raw_status == OK:
                why = f"every stage is ok again, {h['ok_in_a_row']} evaluation(s) in a row"
            elif self.raw_status == WARN:
                why = f"still off: {detail}; a warn never ends a drift"
            else:
                why = "too little data to judge, and lack of data never ends a drift"
            text = f"drift held by hysteresis: {why}; {needs}."
        elif self.status == DRIFT:
            text = f"drift: {detail}"
        elif self.status == WARN:
            text = f"warn: {detail}"
        elif self.status == OK:
            text = f"ok: no stage differs both significantly and by warn_ratio {t.warn_ratio:g} or more"
        else:
            text = f"insufficient_data: every stage needs {t.min_samples} requests on each side"
        note = self.load.note() if self.load is not None else ""
        return f"{text} {note}".strip()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": self.status,
            "raw_status": self.raw_status,
            "reason": self.reason,
            "hysteresis": self.hysteresis,
            "drifted_stages": list(self.drifted_stages),
            "stages": [stage.to_dict() for stage in self.stages],
            "load": None if self.load is None else self.load.to_dict(),
            "evaluated_at": self.evaluated_at,
            "consecutive": self.consecutive,
            "thresholds": self.thresholds.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        """Inverse of ``to_dict``; any malformed input raises ValueError, so callers catch one thing."""
        try:
            load = data.get("load")
            return cls(
                status=data["status"],
                raw_status=data["raw_status"],
                drifted_stages=tuple(data["drifted_stages"]),
                stages=tuple(StageDrift.from_dict(stage) for stage in data["stages"]),
                evaluated_at=float(data["evaluated_at"]),
                consecutive=int(data["consecutive"]),
                thresholds=DriftThresholds.from_dict(data["thresholds"]),
                load=None if load is None else LoadComparison.from_dict(load),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a DriftResult: {exc!r}") from exc


def settle(raw_status: str, previous: DriftResult | None, t: DriftThresholds) -> tuple[str, int]:
    """The status after hysteresis, and ``consecutive``, for this raw status (table in the module docstring)."""
    check_status(raw_status)
    same_run = previous is not None and previous.raw_status == raw_status
    consecutive = previous.consecutive + 1 if previous is not None and same_run else 1
    in_drift = previous is not None and previous.status == DRIFT
    if raw_status == DRIFT:
        return (DRIFT if in_drift or consecutive >= t.enter_after else WARN), consecutive
    if raw_status == OK:
        return (DRIFT if in_drift and consecutive < t.exit_after else OK), consecutive
    # warn and insufficient_data never end a drift, nor start one.
    return (DRIFT if in_drift else raw_status), consecutive


class LatencyDriftSignal:
    """Stateful only through the previous DriftResult passed in (so any process can evaluate next)."""

    def __init__(self, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> None:
        self.thresholds = thresholds

    def evaluate(
        self,
        baseline: Mapping[str, Mapping[int, int]],
        live: Mapping[str, Mapping[int, int]],
        now: float,
        previous: DriftResult | None = None,
        *,
        baseline_traffic: Traffic | None = None,
        live_traffic: Traffic | None = None,
    ) -> DriftResult:
        """Judge every stage, then apply hysteresis over ``previous`` (a stage missing on either side has no data).

        With both sides' ``Traffic``, KS counts batches instead of requests and the result
        compares the loads.
        """
        t = self.thresholds
        stages = tuple(
            compare_stage(s, baseline.get(s, {}), live.get(s, {}), t, baseline_traffic, live_traffic)
            for s in t.stages
        )
        raw_status = max((s.status for s in stages), key=SEVERITY.__getitem__)
        status, consecutive = settle(raw_status, previous, t)
        named = {DRIFT, WARN} if status in (WARN, DRIFT) else {DRIFT}
        drifted = tuple(s.stage for s in stages if s.status in named)
        load = None
        if baseline_traffic is not None and live_traffic is not None:
            load = compare_load(baseline_traffic, live_traffic, t.load_tolerance)
        return DriftResult(status, raw_status, drifted, stages, now, consecutive, t, load)
