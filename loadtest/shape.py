"""A stepped load shape that records one exact row per step and stops by itself.

Concurrency rises through ``--steps``, each step ``--step-s`` long. The first ``--warmup-s``
of a step are not measured (users ramp, queues settle); at the end of the warm-up the shape
resets ``runner.stats``, so the row written at the step's end covers exactly its measured
part (Locust's ``_stats_history.csv`` percentiles are over a rolling 10 s window, useless per
step). Meanwhile a greenlet reads ``GET /api/v1/metrics`` (with the run's API key) every
``--metrics-interval-s`` for the queue depth the stack itself reports. The step table is
rewritten as ``steps.json`` and ``steps.csv`` in ``--output-dir`` after each step. The
options are the locustfile's (``loadtest/settings.py``; each also a ``LOADTEST_*`` variable).

Because the stats are reset per step, Locust's own end-of-run ``_stats.csv`` holds only the
last step; the step table is the record.
"""

from __future__ import annotations

import csv
import json
import os
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape
from locust.runners import Runner
from locust.stats import RequestStats

from loadtest.inflection import DepthSample, depth_summary
from loadtest.settings import LoadSettings

#: The custom request (type, name) each user fires once per task, submit → final status.
E2E_TYPE = "TASK"
E2E_NAME = "task end-to-end"
#: Names of the two submission requests; suffixes mark rejections and cache hits.
SUBMIT_NAMES = ("POST /api/v1/tasks", "POST /api/v1/task?wait=30")
REJECTED_MARK = "[rejected"
CACHED_MARK = "[cached]"

#: Columns of ``steps.csv``, in order (``steps.json`` has the same fields).
COLUMNS = (
    "index",
    "started_at",
    "ended_at",
    "users",
    "users_running",
    "duration_s",
    "submitted",
    "submitted_rps",
    "tasks_finished",
    "tasks_failed",
    "throughput_rps",
    "cached",
    "rejected",
    "reject_rate",
    "error_rate",
    "http_requests",
    "http_failures",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "max_ms",
    "queue_depth_samples",
    "queue_depth_first",
    "queue_depth_last",
    "queue_depth_mean",
    "queue_depth_max",
    "locust_cpu_percent",
    "locust_cpu_warning",
    "machine_cpu_percent",
)


def process_cpu_s(pid: int | str = "self") -> float:
    """CPU seconds (user + system) a process has used, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, whole line).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, all cores, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user time
    return total - idle, total


def step_row(stats: RequestStats, duration_s: float) -> dict[str, Any]:
    """The request part of a step's row, from stats that cover exactly the measured part."""
    submitted = rejected = cached = http_requests = http_failures = 0
    for (name, method), entry in stats.entries.items():
        if method == E2E_TYPE:
            continue
        http_requests += entry.num_requests
        http_failures += entry.num_failures
        if name.startswith(SUBMIT_NAMES):
            submitted += entry.num_requests
            if REJECTED_MARK in name:
                rejected += entry.num_requests
            elif CACHED_MARK in name:
                cached += entry.num_requests
    e2e = stats.entries.get((E2E_NAME, E2E_TYPE))
    finished = e2e.num_requests if e2e else 0
    failed = e2e.num_failures if e2e else 0

    def pct(q: float) -> float | None:
        return float(e2e.get_response_time_percentile(q)) if e2e and finished else None

    duration = max(duration_s, 1e-9)
    return {
        "duration_s": round(duration_s, 3),
        "submitted": submitted,
        "submitted_rps": round(submitted / duration, 3),
        "tasks_finished": finished,
        "tasks_failed": failed,
        "throughput_rps": round((finished - failed) / duration, 3),
        "cached": cached,
        "rejected": rejected,
        "reject_rate": round(rejected / submitted, 4) if submitted else 0.0,
        "error_rate": round(failed / finished, 4) if finished else 0.0,
        "http_requests": http_requests,
        "http_failures": http_failures,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(e2e.avg_response_time, 1) if e2e and finished else None,
        "max_ms": round(float(e2e.max_response_time), 1) if e2e and finished else None,
    }


def read_queue_depth(
    url: str, api_key: str, timeout: float = 2.0, ca_bundle: str = ""
) -> tuple[int, float | None]:
    """``queue_depth`` and ``generated_at`` of the API's latest metrics snapshot (it needs a key),
    over HTTPS verified against ``ca_bundle`` (empty: the system's CAs)."""
    tls = ssl.create_default_context(cafile=ca_bundle or None)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
    )
    request = urllib.request.Request(url, headers={"X-API-Key": api_key})
    with opener.open(request, timeout=timeout) as response:
        snapshot = json.load(response)
    generated = snapshot.get("generated_at")
    return int(snapshot["queue_depth"]), None if generated is None else float(generated)


class StepRecorder:
    """The per-step bookkeeping of ``SteppedShape``: warm-up, measurement, rows and files."""

    def __init__(
        self,
        runner: Runner,
        settings: LoadSettings,
        host: str,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.host = host.rstrip("/")
        self.clock = clock
        self.rows: list[dict[str, Any]] = []
        self.samples: list[DepthSample] = []
        self.metrics_errors = 0
        self.last_metrics_error = ""
        self.started_at = time.time()
        self.index = -1
        self.measuring = False
        self.step_started = 0.0
        self.measure_started = 0.0
        self.measure_started_wall = 0.0
        self.step_started_wall = 0.0
        self.cpu_started = 0.0
        self.machine_started = (0, 0)
        self.output_dir = Path(settings.output_dir)
        self._sampler: gevent.Greenlet | None = None

    def start_sampler(self) -> None:
        """Read the metrics snapshot in the background until ``finish``."""
        self._sampler = gevent.spawn(self._sample_forever)

    def _sample_forever(self) -> None:
        url = f"{self.host}/api/v1/metrics"
        while True:
            try:
                depth, generated_at = read_queue_depth(
                    url, self.settings.api_key, ca_bundle=self.settings.ca_bundle
                )
            except Exception as exc:  # not ready yet (503), or unreachable: count it, keep going
                self.metrics_errors += 1
                self.last_metrics_error = f"{type(exc).__name__}: {exc}"
            else:
                self.samples.append(DepthSample(self.clock(), depth, generated_at))
            gevent.sleep(self.settings.metrics_interval_s)

    def advance(self, index: int) -> None:
        """Move to step ``index`` (closing the previous one) and start measuring after warm-up."""
        now = self.clock()
        if index != self.index:
            if self.index >= 0:
                self._close_step(now)
            self.index = index
            self.step_started = now
            self.step_started_wall = time.time()
            self.measuring = False
        if (
            not self.measuring
            and index < len(self.settings.steps)
            and now - self.step_started >= self.settings.warmup_s
        ):
            self.runner.stats.reset_all()
            self.measuring = True
            self.measure_started = now
            self.measure_started_wall = time.time()
            self.cpu_started = process_cpu_s()
            self.machine_started = machine_cpu_ticks()

    def finish(self) -> None:
        """Close the last step, write the files for good and stop sampling."""
        if self.index >= 0 and self.index < len(self.settings.steps):
            self._close_step(self.clock())
            self.index = len(self.settings.steps)
        if self._sampler is not None:
            self._sampler.kill(block=False)
            self._sampler = None
        self.write(complete=True)

    def _close_step(self, now: float) -> None:
        if not self.measuring:  # the step ended within its warm-up: measure all of it
            self.measure_started = self.step_started
            self.measure_started_wall = self.step_started_wall
            self.cpu_started = process_cpu_s()
            self.machine_started = machine_cpu_ticks()
        duration = now - self.measure_started
        window = [s for s in self.samples if self.measure_started <= s.at <= now]
        cpu = (process_cpu_s() - self.cpu_started) / duration * 100 if duration > 0 else None
        row: dict[str, Any] = {
            "index": self.index,
            # Wall-clock bounds of the measured part, for joining with other time series.
            "started_at": round(self.measure_started_wall, 3),
            "ended_at": round(time.time(), 3),
            "users": self.settings.steps[self.index],
            "users_running": self.runner.user_count,
        }
        row.update(step_row(self.runner.stats, duration))
        row.update(depth_summary(window))
        row["locust_cpu_percent"] = None if cpu is None else round(cpu, 1)
        row["locust_cpu_warning"] = bool(self.runner.cpu_warning_emitted)
        busy, total = machine_cpu_ticks()
        busy_delta, total_delta = busy - self.machine_started[0], total - self.machine_started[1]
        row["machine_cpu_percent"] = round(100 * busy_delta / total_delta, 1) if total_delta > 0 else None
        self.rows.append(row)
        self.measuring = False
        self.write(complete=False)

    def write(self, complete: bool) -> None:
        """Rewrite ``steps.json`` and ``steps.csv`` with the rows so far."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "complete": complete,
            "host": self.host,
            "started_at": self.started_at,
            "settings": self.settings.public(),
            "steps": self.rows,
            "generator": {
                "cpu_warning": bool(self.runner.cpu_warning_emitted),
                "metrics_samples": len(self.samples),
                "metrics_errors": self.metrics_errors,
                "last_metrics_error": self.last_metrics_error,
            },
        }
        tmp = self.output_dir / "steps.json.tmp"
        tmp.write_text(json.dumps(document, indent=2))
        tmp.replace(self.output_dir / "steps.json")
        with (self.output_dir / "steps.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


class SteppedShape(LoadTestShape):
    """Raise concurrency through ``--steps``; return None (stop) after the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.recorder: StepRecorder | None = None

    def tick(self) -> tuple[int, float] | None:
        """Called by the runner about once a second: the users wanted now, or None to stop."""
        assert self.runner is not None
        if self.recorder is None:
            # Locust makes the shape before it parses the options: read them at the first tick.
            environment = self.runner.environment
            settings = LoadSettings.from_options(environment.parsed_options)
            self.recorder = StepRecorder(self.runner, settings, environment.host or "")
            self.recorder.start_sampler()
        settings = self.recorder.settings
        index = int(self.get_run_time() // settings.step_s)
        if index >= len(settings.steps):
            self.recorder.finish()
            return None
        self.recorder.advance(index)
        return settings.steps[index], settings.spawn_rate
