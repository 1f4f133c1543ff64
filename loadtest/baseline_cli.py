"""``make baseline``: capture a PerformanceBaseline and make it the active one.

Default: a steady, healthy load — ``--clients`` closed-loop clients that submit and
long-poll, well below the inflection point ``make loadtest`` finds — for ``--warmup`` then
``--seconds``; the baseline is built from the metrics' whole 10-second slots inside the
measured part. The
target is found as ``make loadtest`` finds it (``LOADTEST_HOST``/``LOADTEST_API_KEY``, else
the local stack, started here and stopped again if none answers).
``--from-live --seconds N``: no load; the last N seconds of a running cluster's metrics.

Either way the capture is written to ``BATCHGATE_BASELINE_DIR/<timestamp>.json``,
``latest.json`` is pointed at it, and it becomes the active baseline in Redis (what the
metrics task measures drift against) unless ``--no-activate``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from baseline.capture import REPO, CaptureError, capture, latency_settings, whole_slots
from baseline.model import PerformanceBaseline
from baseline.slots import SLOT_S
from baseline.snapshots import write_snapshot
from batchgate.baseline_store import BaselineStore
from batchgate.metrics_store import InferenceMetricsCollector
from batchgate.settings import Settings, SettingsError
from loadtest.bench_load import Client, LoadRun, closed_loop, prompts, session
from loadtest.run import RunFailed, find_or_start_target
from loadtest.settings import LoadSettings, LoadSettingsError


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.baseline_cli", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients of the healthy load (8)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load not captured (10)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds captured (60)")
    parser.add_argument(
        "--from-live", action="store_true", help="no load: the last --seconds of live metrics"
    )
    parser.add_argument("--no-activate", action="store_true", help="write the file only")
    parser.add_argument("--notes", default="", help="free text stored with the baseline")
    args = parser.parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        settings = Settings.from_env(env)
        load = LoadSettings.from_env(env)
    except (SettingsError, LoadSettingsError) as exc:
        print(f"baseline: bad setting: {exc}", file=sys.stderr)
        return 2
    folder = Path(settings.drift.baseline_dir)
    folder = folder if folder.is_absolute() else REPO / folder
    saved: list[Path] = []

    def keep(baseline: PerformanceBaseline, stack: Settings) -> None:
        """Write the capture and activate it, while the stack (and its Redis) still runs."""
        saved.append(write_snapshot(baseline, folder))
        if not args.no_activate:
            BaselineStore(redis.Redis.from_url(stack.broker.redis_url), stack.broker.key_prefix).activate(
                baseline
            )

    try:
        if args.from_live:
            baseline = from_live(settings, args.seconds, args.notes)
            keep(baseline, settings)
        else:
            baseline = under_load(
                settings, load, env, args.clients, args.warmup, args.seconds, args.notes, keep
            )
    except (CaptureError, RunFailed, redis.RedisError) as exc:
        print(f"baseline: capture failed: {exc}", file=sys.stderr)
        return 1
    path = saved[0]
    e2e = baseline.stages["end_to_end"].percentiles_ms
    print(
        f"baseline: {path} ({baseline.sample_count} requests over {baseline.load['window_s']:g} s, "
        f"{baseline.throughput_rps:g} req/s; end-to-end p50 {e2e['p50']} ms, p95 {e2e['p95']} ms, "
        f"p99 {e2e['p99']} ms){'' if args.no_activate else '; active'}"
    )
    return 0


def from_live(
    settings: Settings, seconds: float, notes: str = "", now: float | None = None
) -> PerformanceBaseline:
    """The baseline of the last ``seconds`` (whole slots) of a running cluster's metrics."""
    end = time.time() if now is None else now
    return _capture(settings, end - seconds, end, {"source": "live metrics"}, notes)


def under_load(
    settings: Settings,
    load: LoadSettings,
    env: Mapping[str, str],
    clients: int,
    warmup_s: float,
    seconds: float,
    notes: str = "",
    keep: Callable[[PerformanceBaseline, Settings], None] | None = None,
) -> PerformanceBaseline:
    """Drive a steady healthy load, then capture its measured part (``keep`` runs before a
    stack started here is stopped)."""
    with contextlib.ExitStack() as cleanup:
        target = find_or_start_target(load, settings, env, cleanup)
        stack = target.stack or settings
        print(f"baseline: {clients} clients against {target.host}, {warmup_s:g} s warm-up + {seconds:g} s")
        start, end, run = asyncio.run(_drive(target.host, target.api_key, clients, warmup_s, seconds))
        # Records land in the slot of their finish: wait until the last slot is complete.
        time.sleep(max(0.0, (whole_slots(start, end)[-1] + 1) * SLOT_S - time.time() + 0.5))
        described = {
            "source": "make baseline",
            "clients": clients,
            "client": "closed loop: submit, then long-poll",
            "completed": len(run.completions),
            "target": target.host,
        }
        baseline = _capture(stack, start, end, described, notes)
        if keep is not None:
            keep(baseline, stack)
        return baseline


async def _drive(
    host: str, api_key: str, clients: int, warmup_s: float, seconds: float
) -> tuple[float, float, LoadRun]:
    run = LoadRun()
    async with session(api_key, clients) as http:
        loop = asyncio.create_task(
            closed_loop(Client(http, host, run), clients, prompts(f"baseline-{time.time():.0f}"))
        )
        try:
            await asyncio.sleep(warmup_s)
            start = time.time()
            await asyncio.sleep(seconds)
            end = time.time()
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    return start, end, run


def _capture(
    settings: Settings, start: float, end: float, load: dict[str, Any], notes: str
) -> PerformanceBaseline:
    client = redis.Redis.from_url(settings.broker.redis_url)
    slots = InferenceMetricsCollector(client, settings.broker.key_prefix).read(list(whole_slots(start, end)))
    baseline = capture(
        {s: d for s, d in slots.items() if isinstance(s, int)},
        start,
        end,
        settings=latency_settings(settings),
        load=load,
        created_at=time.time(),
        min_samples=settings.drift.drift_min_samples,
        inflection=latest_inflection(),
    )
    return dataclasses.replace(baseline, notes=notes) if notes else baseline


def latest_inflection(reports: Path = REPO / "loadtest" / "reports") -> dict[str, Any] | None:
    """The inflection point of the newest ``make loadtest`` report, with where it came from."""
    found = sorted(reports.glob("*/report.json")) if reports.exists() else []
    for path in reversed(found):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if report.get("inflection"):
            return {**report["inflection"], "report": str(path.relative_to(REPO))}
    return None


if __name__ == "__main__":
    sys.exit(main())
