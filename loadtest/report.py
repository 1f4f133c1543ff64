"""The load test's outputs: the JSON report, the PNG plot and the printed summary.

The plot uses matplotlib's object API on the Agg canvas (``Figure``, never ``pyplot``), so
it needs no display and keeps no global state between runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from loadtest.inflection import Analysis
from loadtest.run_cost import cost_line

#: Locust logs this line (once) when its process uses more than 90 % of a core.
LOCUST_CPU_WARNING = "CPU usage above"
#: A step in which the Locust process used this much of a core: the generator may be the limit.
GENERATOR_BUSY_PERCENT = 90.0


def generator_verdict(
    steps: Sequence[Mapping[str, Any]], cpu_warning: bool, run_cpu_percent: float | None
) -> dict[str, Any]:
    """Was the load generator itself the bottleneck? (Locust's warning, or a busy step.)"""
    per_step = [s.get("locust_cpu_percent") for s in steps]
    busiest = max((c for c in per_step if c is not None), default=None)
    busy_steps = [s["index"] for s in steps if (s.get("locust_cpu_percent") or 0) >= GENERATOR_BUSY_PERCENT]
    bottleneck = cpu_warning or bool(busy_steps)
    return {
        "locust_cpu_percent_run": None if run_cpu_percent is None else round(run_cpu_percent, 1),
        "locust_cpu_percent_max_step": busiest,
        "locust_cpu_warning": cpu_warning,
        "busy_steps": busy_steps,
        "bottleneck": bottleneck,
        "note": (
            "the Locust process came close to a full core: results at the busy steps may be "
            "limited by the generator, not the stack"
            if bottleneck
            else "the Locust process stayed below 90 % of a core at every step"
        ),
    }


def build_report(
    *,
    steps: Sequence[Mapping[str, Any]],
    analysis: Analysis,
    target: Mapping[str, Any],
    settings: Mapping[str, Any],
    generator: Mapping[str, Any],
    run: Mapping[str, Any],
    files: Mapping[str, str],
) -> dict[str, Any]:
    """The JSON report: what was run, the step table, and what it shows."""
    return {
        "target": dict(target),
        "settings": dict(settings),
        "steps": [dict(s) for s in steps],
        **analysis.to_dict(),
        "generator": dict(generator),
        "run": dict(run),
        "files": dict(files),
    }


def write_json(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def plot(steps: Sequence[Mapping[str, Any]], analysis: Analysis, path: Path, title: str = "") -> Path:
    """Throughput, p50/p95/p99 and queue depth against offered load; the inflection marked."""
    users = [int(s["users"]) for s in steps]
    fig = Figure(figsize=(9, 10.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    fig.suptitle(title or "batchgate load characterisation", fontsize=12)

    throughput = [s.get("throughput_rps") or 0.0 for s in steps]
    submitted = [s.get("submitted_rps") or 0.0 for s in steps]
    top.plot(users, throughput, "o-", color="#1f77b4", label="finished tasks/s (throughput)")
    top.plot(users, submitted, "s--", color="#7f7f7f", alpha=0.7, label="submissions/s (offered)")
    saturation = analysis.saturation
    if saturation is not None and saturation.throughput_rps > 0:
        kind = "saturation" if saturation.saturated else "max (not saturated)"
        top.axhline(
            saturation.throughput_rps,
            color="#1f77b4",
            ls=":",
            lw=1,
            label=f"{kind}: {saturation.throughput_rps:.1f}/s",
        )
    top.set_ylabel("tasks per second")
    top.set_ylim(bottom=0)

    for key, label, color in (
        ("p50_ms", "p50", "#2ca02c"),
        ("p95_ms", "p95", "#ff7f0e"),
        ("p99_ms", "p99", "#d62728"),
    ):
        xs, ys = _present(users, [s.get(key) for s in steps])
        middle.plot(xs, ys, "o-", color=color, label=f"{label} end-to-end")
    baseline = analysis.baseline_p95_ms
    if baseline is not None:
        middle.axhline(baseline, color="#ff7f0e", ls=":", lw=1, label=f"p95 baseline {baseline:.0f} ms")
        knee = analysis.criteria.knee_factor * baseline
        middle.axhline(
            knee, color="#ff7f0e", ls="--", lw=0.8, alpha=0.6, label=f"knee threshold {knee:.0f} ms"
        )
    middle.set_ylabel("end-to-end latency, ms")
    middle.set_ylim(bottom=0)
    middle.legend(loc="upper left", fontsize=8)

    xs, means = _present(users, [s.get("queue_depth_mean") for s in steps])
    bottom.plot(xs, means, "o-", color="#9467bd", label="queue depth, mean of samples")
    xs_max, maxima = _present(users, [s.get("queue_depth_max") for s in steps])
    bottom.plot(xs_max, maxima, "^", color="#9467bd", alpha=0.6, label="queue depth, max")
    for s in steps:
        first, last = s.get("queue_depth_first"), s.get("queue_depth_last")
        if first is not None and last is not None and last != first:
            bottom.annotate(
                f"{first:g}→{last:g}",
                (s["users"], last),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    bottom.set_ylabel("queue depth (requests)")
    bottom.set_ylim(bottom=0)
    rates = bottom.twinx()
    rates.plot(
        users, [100 * (s.get("error_rate") or 0) for s in steps], "x:", color="#d62728", label="errors %"
    )
    rates.plot(
        users, [100 * (s.get("reject_rate") or 0) for s in steps], "+:", color="#8c564b", label="rejected %"
    )
    rates.set_ylabel("errors / rejected, %")
    rates.set_ylim(
        0,
        max(
            5.0,
            *(100 * (s.get("error_rate") or 0) for s in steps),
            *(100 * (s.get("reject_rate") or 0) for s in steps),
        )
        * 1.1,
    )
    handles, labels = bottom.get_legend_handles_labels()
    more_handles, more_labels = rates.get_legend_handles_labels()
    bottom.legend(handles + more_handles, labels + more_labels, loc="upper left", fontsize=8)

    bottom.set_xlabel("offered load (concurrent users)")
    _user_axis(bottom, users)
    inflection = analysis.inflection
    for ax in (top, middle, bottom):
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.06)
        if inflection is not None:
            marker = f"inflection: {inflection.users} users ({inflection.reason})" if ax is top else None
            ax.axvline(inflection.users, color="#d62728", ls="--", lw=1.2, label=marker)
    top.legend(loc="upper left", fontsize=8)
    fig.savefig(path, format="png")
    return path


def summary(report: Mapping[str, Any]) -> str:
    """A short text summary: the step table and what it shows."""
    lines = [f"loadtest: {report['target'].get('description', report['target'].get('host'))}"]
    header = f"{'users':>6} {'tasks/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'err %':>6} {'rej %':>6} {'queue mean/max (first→last)':>29} {'locust %core':>12} {'others %host':>12}"
    lines.append(header)
    for s in report["steps"]:
        queue = "n/a"
        if s.get("queue_depth_mean") is not None:
            queue = f"{s['queue_depth_mean']:g}/{s['queue_depth_max']:g} ({s['queue_depth_first']:g}→{s['queue_depth_last']:g})"
        lines.append(
            f"{s['users']:>6} {s.get('throughput_rps', 0):>8.1f} {_ms(s.get('p50_ms')):>8} {_ms(s.get('p95_ms')):>8} "
            f"{_ms(s.get('p99_ms')):>8} {100 * (s.get('error_rate') or 0):>6.1f} {100 * (s.get('reject_rate') or 0):>6.1f} "
            f"{queue:>29} {_pct(s.get('locust_cpu_percent')):>12} {_pct(s.get('other_cpu_percent')):>12}"
        )
    inflection = report.get("inflection")
    if inflection:
        lines.append(
            f"inflection: step {inflection['step_index']} ({inflection['users']} users): "
            f"{inflection['throughput_rps']:.1f} tasks/s, p95 {_ms(inflection['p95_ms'])} ms vs baseline "
            f"{_ms(inflection['baseline_p95_ms'])} ms ({inflection['reason']})"
        )
    else:
        lines.append("inflection: none (queue flat and p95 within its knee threshold at every step)")
    saturation = report.get("saturation")
    if saturation:
        state = "saturated" if saturation["saturated"] else "still rising: a lower bound"
        lines.append(
            f"saturation throughput: {saturation['throughput_rps']:.1f} tasks/s at {saturation['users']} users ({state})"
        )
    if "cost" in report:
        lines.append(cost_line(report["cost"]))
    generator = report.get("generator", {})
    lines.append(
        f"generator: Locust used {_pct(generator.get('locust_cpu_percent_run'))} % of a core over the run, "
        f"{_pct(generator.get('locust_cpu_percent_max_step'))} % at its busiest step; "
        f"CPU warning: {'yes' if generator.get('locust_cpu_warning') else 'no'}"
        + ("; THE GENERATOR MAY BE THE BOTTLENECK" if generator.get("bottleneck") else "")
    )
    machine = generator.get("machine") or {}
    if machine.get("contended_steps"):
        who = ", ".join(machine.get("contenders", [])) or "unknown"
        lines.append(
            f"machine: CONTENDED at steps {machine['contended_steps']} (by {who}): {machine['note']}"
        )
    files = report.get("files", {})
    if files:
        lines.append(
            f"report: {files.get('folder', '')}  ({', '.join(Path(p).name for k, p in files.items() if k != 'folder')})"
        )
    return "\n".join(lines)


def _present(xs: Sequence[int], ys: Sequence[Any]) -> tuple[list[int], list[float]]:
    pairs = [(x, float(y)) for x, y in zip(xs, ys, strict=True) if y is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _user_axis(ax: Axes, users: Sequence[int]) -> None:
    """Log-2 x axis when the ladder doubles (it usually does), labelled at each step's users."""
    if len(users) > 1 and min(users) > 0 and max(users) / min(users) >= 4:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(users))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(u) for u in sorted(set(users))])


def _ms(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.0f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}"
