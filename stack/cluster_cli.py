"""``python -m stack.cluster run | render``: the local stack from the command line.

``run`` (what ``make run`` calls) stays in the foreground and turns Ctrl-C or SIGTERM into
one orderly ``Cluster.stop()``; ``render`` only writes the configs, for inspection and for
the compose nginx container.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from batchgate.apikeys import new_key
from batchgate.settings import Settings, SettingsError
from stack.cluster import Cluster, ClusterError
from stack.nginx_config import TEMPLATE, compose_layout, render_nginx

#: After this long without a 200 from /ready, ``run`` says where to look (and keeps waiting).
READY_HINT_AFTER_S = 90.0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, read Settings once, and run the subcommand."""
    parser = argparse.ArgumentParser(prog="python -m stack.cluster", description="batchgate local stack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the whole local stack in the foreground; Ctrl-C stops it")
    render = commands.add_parser("render", help="only write the configs into the run folder")
    render.add_argument("--run-dir", type=Path, help="default: BATCHGATE_RUN_DIR (.run)")
    render.add_argument("--compose", action="store_true", help="write only nginx.conf, for docker-compose")
    render.add_argument("--template", type=Path, default=TEMPLATE, help="nginx template (--compose)")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.command == "run" and not env.get("BATCHGATE_DEMO_API_KEY"):
        # A demo key of the premium tier for this run, printed in the banner.
        env["BATCHGATE_DEMO_API_KEY"] = new_key()
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        print(f"batchgate: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "render":
        run_dir = args.run_dir or Path(settings.stack.run_dir)
        if args.compose:
            layout = compose_layout(settings, run_dir)
            path = run_dir / "nginx.conf"
            run_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(render_nginx(settings, layout, args.template.read_text()))
            print(path)
        else:
            for path in Cluster(settings, run_dir, os.environ).render():
                print(path)
        return 0
    return run(Cluster(settings, Path(settings.stack.run_dir), env))


def run(cluster: Cluster) -> int:
    """Start the stack, print where everything is, and wait for Ctrl-C, SIGTERM or supervisord."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            print("batchgate: still stopping; waiting for the programs to exit", flush=True)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start(echo=True)
    except ClusterError as exc:
        print(f"batchgate: {exc}", file=sys.stderr)
        return 1
    print(banner(cluster), flush=True)
    status = 0
    try:
        ready, hinted = False, False
        started = time.monotonic()
        while not stopping.wait(0.5):
            code = cluster.poll()
            if code is not None:
                print(f"batchgate: supervisord exited with status {code}", file=sys.stderr)
                status = code or 1
                break
            if not ready and cluster.is_ready():
                ready = True
                print(f"batchgate: ready at {cluster.urls()['api']} (Ctrl-C stops everything)", flush=True)
            elif not ready and not hinted and time.monotonic() - started > READY_HINT_AFTER_S:
                hinted = True
                print(f"batchgate: not ready yet; see {cluster.logs_dir}/*.log", file=sys.stderr)
    finally:
        print("batchgate: stopping…", flush=True)
        cluster.stop()
        print("batchgate: stopped", flush=True)
    return status


def banner(cluster: Cluster) -> str:
    """The URLs and credentials of a freshly started stack."""
    urls = cluster.urls()
    user, _, password = cluster.flower_auth.partition(":")
    replicas = "  ".join(urls[f"api-{port}"] for port in cluster.settings.api.api_ports)
    if "simulator" not in urls:
        simulator = "not used (real Gemini)"
    elif "simulator" in cluster.programs:
        simulator = urls["simulator"]
    else:
        simulator = f"{urls['simulator']} (not started here)"
    redis = f"{urls['redis']} ({'started here' if cluster.starts_redis else 'already running'})"
    conf = cluster.conf_path
    return "\n".join(
        [
            "",
            "batchgate local stack",
            f"  API (nginx)  {urls['api']}",
            *(
                [f"  HTTPS        {urls['api_https']}  (HTTP/2; self-signed: curl -k)"]
                if "api_https" in urls
                else []
            ),
            f"  dashboard    {urls['api']}/dashboard   metrics {urls['api']}/api/v1/metrics   Prometheus {urls['api']}/metrics",
            f"  replicas     {replicas}",
            f"  simulator    {simulator}",
            f"  Flower       {urls['flower']}  user {user}  password {password}",
            f"  API key      {demo_key(cluster)}",
            f"  Redis        {redis}",
            f"  logs         {cluster.logs_dir}/<program>.log",
            f"  control      {Path(sys.executable).parent / 'supervisorctl'} -c {conf} status",
            "",
        ]
    )


def demo_key(cluster: Cluster) -> str:
    """The demo key line of the banner."""
    if not cluster.settings.edge.auth_enabled:
        return "not needed (BATCHGATE_AUTH_ENABLED=false)"
    return f"{cluster.settings.edge.demo_api_key} (premium; send it as X-API-Key)"


if __name__ == "__main__":
    sys.exit(main())
