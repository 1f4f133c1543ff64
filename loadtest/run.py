"""``make loadtest``: run the stepped Locust suite and write a report folder.

Targets ``--host``/``LOADTEST_HOST`` (with ``LOADTEST_API_KEY``) when set; otherwise the local
stack at ``BATCHGATE_NGINX_PORT``, which it starts (and stops again) when nothing answers
there. The stack it starts gets a premium demo key whose rate limit is raised out of the way,
so the test measures the stack rather than the limiter. Locust runs headless in a subprocess
(it monkey-patches its whole process with gevent); its CPU time is measured from outside.

Its options are the locustfile's plus ``--host`` and ``--reports-dir``
(``python -m loadtest.run --help``), each also a ``LOADTEST_*`` variable
(``loadtest/settings.py``); it hands the locustfile's on to Locust as Locust options.

Writes ``loadtest/reports/<timestamp>/``: Locust's CSVs and log, the shape's ``steps.json``
and ``steps.csv``, ``report.json`` and ``plot.png``; prints a short summary. Exits non-zero
only if the run itself failed (the stack would not start, Locust crashed or wrote no steps),
never because requests failed: that is what is being measured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchgate.apikeys import new_key
from batchgate.settings import Settings, SettingsError
from loadtest.cpu_watch import CpuWatch, contention
from loadtest.inflection import analyse
from loadtest.report import LOCUST_CPU_WARNING, build_report, generator_verdict, plot, summary, write_json
from loadtest.run_cost import UsageReader, run_cost
from loadtest.settings import LoadSettings, LoadSettingsError
from stack.cluster import Cluster, ClusterError
from stack.programs import redacted_url

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
#: Premium-tier rate and burst given to the stack this driver starts (unless set in the environment).
RATE_OUT_OF_THE_WAY = "1000000"
#: The stack this driver starts must be ready (replicas up, a worker consuming) within this.
READY_TIMEOUT_S = 120.0
#: ... and have published its first metrics snapshot within this (beat runs every 2 s).
METRICS_TIMEOUT_S = 30.0
#: Locust gets the planned duration plus this before it is stopped as hung.
LOCUST_GRACE_S = 90.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RunFailed(RuntimeError):
    """The load test could not be run (not: requests failed during it)."""


@dataclass
class Target:
    """Where the load goes, with which key, and the stack this driver started (if any)."""

    host: str
    api_key: str
    cluster: Cluster | None = None
    stack: Settings | None = None
    notes: list[str] = field(default_factory=list)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Read the settings once (options over ``LOADTEST_*``), run, report; 0 unless the run
    itself failed."""
    env = dict(os.environ if environ is None else environ)
    try:
        load = LoadSettings.from_args(
            sys.argv[1:] if argv is None else argv, env, prog="python -m loadtest.run"
        )
        stack = Settings.from_env(env)
    except (LoadSettingsError, SettingsError) as exc:
        print(f"loadtest: bad setting: {exc}", file=sys.stderr)
        return 2
    folder = Path(load.reports_dir) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if not folder.is_absolute():
        folder = REPO / folder
    folder.mkdir(parents=True, exist_ok=False)
    try:
        report = run(load, stack, env, folder)
    except RunFailed as exc:
        print(f"loadtest: run failed: {exc}\nloadtest: see {folder}", file=sys.stderr)
        return 1
    print(summary(report), flush=True)
    return 0 if report["run"]["ok"] else 1


def run(load: LoadSettings, stack: Settings, env: Mapping[str, str], folder: Path) -> dict[str, Any]:
    """Bring up (or find) the target, run Locust, analyse and write the report."""
    with contextlib.ExitStack() as cleanup:
        target = find_or_start_target(load, stack, env, cleanup)
        print(f"loadtest: {len(load.steps)} steps x {load.step_s:g} s against {target.host}", flush=True)
        usage = UsageReader(target.host, target.api_key, load.ca_bundle)
        before = usage.read()
        with CpuWatch() as watch:
            locust = run_locust(load, target, env, folder)
        spent = run_cost(before, usage.settled())
        simulator = simulator_config(target, stack)
    steps_doc = _read_steps(folder / "steps.json")
    steps = steps_doc.get("steps", [])
    for step in steps:
        if step.get("started_at") and step.get("ended_at"):
            step.update(watch.during(step["started_at"], step["ended_at"]))
    analysis = analyse(steps)
    complete = bool(steps_doc.get("complete")) and len(steps) == len(load.steps)
    cpu_warning = bool(steps_doc.get("generator", {}).get("cpu_warning")) or locust["cpu_warning_logged"]
    generator = generator_verdict(steps, cpu_warning, locust["cpu_percent"])
    generator["metrics_samples"] = steps_doc.get("generator", {}).get("metrics_samples")
    generator["metrics_errors"] = steps_doc.get("generator", {}).get("metrics_errors")
    generator["machine"] = contention(steps)
    started = target.cluster is not None
    files = {"folder": str(folder), "report": str(folder / "report.json"), "plot": str(folder / "plot.png")}
    files.update({"steps_json": str(folder / "steps.json"), "steps_csv": str(folder / "steps.csv")})
    files.update({p.name: str(p) for p in sorted(folder.glob("locust*"))})
    report = build_report(
        steps=steps,
        analysis=analysis,
        target={
            "host": target.host,
            "stack_started_here": started,
            "description": f"{len(load.steps)} steps x {load.step_s:g} s against {target.host}"
            + (" (stack started for this run)" if started else ""),
            "notes": target.notes,
        },
        settings={
            "loadtest": load.public(),
            "stack": _public_settings(target.stack) if target.stack else None,
            "simulator": simulator,
        },
        generator=generator,
        run={
            "ok": locust["exit_code"] == 0 and complete,
            "complete": complete,
            "locust_exit_code": locust["exit_code"],
            "wall_s": locust["wall_s"],
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        files=files,
    )
    report["cost"] = spent
    write_json(folder / "report.json", report)
    title = f"batchgate load characterisation — {folder.name}"
    plot(steps, analysis, folder / "plot.png", title=title)
    return report


def find_or_start_target(
    load: LoadSettings, stack: Settings, env: Mapping[str, str], cleanup: contextlib.ExitStack
) -> Target:
    """``LOADTEST_HOST``; or the local stack if it answers; or a stack started here."""
    if load.host:
        host = load.host.rstrip("/")
        if _status(f"{host}/health") == 0:
            raise RunFailed(f"nothing answers at LOADTEST_HOST={host}")
        key = load.api_key or env.get("BATCHGATE_DEMO_API_KEY", "")
        notes = ["LOADTEST_HOST: an existing stack; its rate limits apply (429s are counted as rejections)"]
        return Target(host, key, notes=notes)
    host = f"http://127.0.0.1:{stack.stack.nginx_port}"
    if _status(f"{host}/health") != 0:
        key = load.api_key or env.get("BATCHGATE_DEMO_API_KEY", "")
        if not key and stack.edge.auth_enabled:
            raise RunFailed(
                f"a stack already answers at {host}; set LOADTEST_API_KEY to one of its keys "
                "(make run prints its demo key), or stop it to let make loadtest start its own"
            )
        notes = [f"a stack already running at {host} was used; its rate limits apply"]
        return Target(host, key, notes=notes)
    return start_stack(load, env, cleanup)


def start_stack(load: LoadSettings, env: Mapping[str, str], cleanup: contextlib.ExitStack) -> Target:
    """Start the local stack with a premium demo key whose rate limit is out of the way."""
    child = dict(env)
    notes = []
    if not child.get("BATCHGATE_DEMO_API_KEY"):
        child["BATCHGATE_DEMO_API_KEY"] = new_key()
    for name in (
        "BATCHGATE_TIER_PREMIUM_RATE",
        "BATCHGATE_TIER_PREMIUM_BURST",
        "BATCHGATE_TIER_PREMIUM_MAX_IN_FLIGHT",
    ):
        if not child.get(name):
            child[name] = RATE_OUT_OF_THE_WAY
    try:
        settings = Settings.from_env(child)
    except SettingsError as exc:
        raise RunFailed(f"bad setting: {exc}") from None
    notes.append(
        f"stack started for this run; the demo key's premium tier raised to {settings.edge.tier_premium_rate:,.0f}/s, "
        f"burst {settings.edge.tier_premium_burst:,}, {settings.edge.tier_premium_max_in_flight:,} tasks in flight "
        "(BATCHGATE_TIER_PREMIUM_RATE/_BURST/_MAX_IN_FLIGHT) so that its limits stay out of the measurement"
    )
    cluster = Cluster(settings, Path(settings.stack.run_dir), child)
    print(f"loadtest: starting the local stack (logs in {cluster.logs_dir})", flush=True)
    try:
        cluster.start()
    except ClusterError as exc:
        raise RunFailed(f"could not start the stack: {exc}") from None
    cleanup.callback(_stop, cluster)
    try:
        cluster.wait_ready(READY_TIMEOUT_S)
    except (ClusterError, TimeoutError) as exc:
        raise RunFailed(f"the stack did not become ready: {exc}") from None
    host = cluster.urls()["api"]
    key = load.api_key or settings.edge.demo_api_key
    deadline = time.monotonic() + METRICS_TIMEOUT_S
    while _status(f"{host}/api/v1/metrics", {"X-API-Key": key}) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    return Target(host, key, cluster=cluster, stack=settings, notes=notes)


def run_locust(load: LoadSettings, target: Target, env: Mapping[str, str], folder: Path) -> dict[str, Any]:
    """Locust headless in a subprocess with the step shape; its exit code, wall and CPU time.

    The locustfile's options go on Locust's command line (they win over any ``LOADTEST_*``
    left in the environment), the API key in its environment (out of ``ps``)."""
    child_env = {**env, "LOADTEST_API_KEY": target.api_key}
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        target.host,
        "--csv",
        str(folder / "locust"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--logfile",
        str(folder / "locust.log"),
        *dataclasses.replace(load, output_dir=str(folder)).locust_argv(),
    ]
    timeout = load.duration_s + LOCUST_GRACE_S
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with (folder / "locust.out").open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RunFailed(f"Locust did not finish within {timeout:g} s") from None
        except BaseException:  # Ctrl-C: do not leave the generator running
            proc.kill()
            proc.wait()
            raise
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    logged = "\n".join(
        p.read_text(errors="replace") for p in (folder / "locust.log", folder / "locust.out") if p.exists()
    )
    return {
        "exit_code": code,
        "wall_s": round(wall, 1),
        "cpu_percent": 100 * cpu_s / wall if wall > 0 else None,
        "cpu_warning_logged": LOCUST_CPU_WARNING in logged,
    }


def simulator_config(target: Target, stack: Settings) -> dict[str, Any] | None:
    """The simulator's cost model (``GET /_sim/config``), if a simulator is reachable."""
    if target.cluster is not None:
        url = target.cluster.urls().get("simulator")
    elif stack.gemini.uses_simulator:
        url = stack.gemini.simulator_url or stack.gemini.embedded_simulator_url
    else:
        url = None
    if not url:
        return None
    try:
        with _OPENER.open(f"{url.rstrip('/')}/_sim/config", timeout=2.0) as response:
            return {"url": url, **json.load(response)}
    except (OSError, ValueError):
        return None


def _read_steps(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RunFailed(f"Locust wrote no step table ({path.name}); see locust.log and locust.out")
    document: dict[str, Any] = json.loads(path.read_text())
    if not document.get("steps"):
        raise RunFailed("the step table is empty; see locust.log and locust.out")
    return document


def _public_settings(settings: Settings) -> dict[str, Any]:
    """The stack's settings for the report, by section, without secrets."""
    data = dataclasses.asdict(settings)
    for section, secret in (("edge", "demo_api_key"), ("gemini", "gemini_api_key"), ("stack", "flower_auth")):
        data[section][secret] = "(set)" if data[section][secret] else ""
    data["broker"]["redis_url"] = redacted_url(settings.broker.redis_url)
    return data


def _status(url: str, headers: Mapping[str, str] | None = None) -> int:
    """HTTP status of a GET, 0 when nothing answered."""
    try:
        with _OPENER.open(urllib.request.Request(url, headers=dict(headers or {})), timeout=2.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


def _stop(cluster: Cluster) -> None:
    print("loadtest: stopping the stack it started", flush=True)
    cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
