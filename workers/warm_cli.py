"""``python -m workers.warm_cli FILE --tenant T [--rate N]`` (``make warm-cache``): queue a warming run.

Sends the queries to a worker as one ``batchgate.warm_cache`` task and, unless ``--no-wait``,
waits for its report.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from batchgate import keys as key_names
from batchgate.broker import WARM_CACHE_TASK
from batchgate.settings import Settings
from batchgate.tenants import TENANT_ID
from workers.app import create_celery
from workers.cache_warming import load_queries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.warm_cli", description="warm the response cache")
    parser.add_argument("file", type=Path, help="JSON array or JSONL of task requests")
    parser.add_argument(
        "--tenant",
        required=True,
        help="whose cache to fill: a tenant name, or key:<hash> for a key that is its own tenant",
    )
    parser.add_argument("--rate", type=float, default=5.0, help="queries per second at most (default 5)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the report")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the report")
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if not TENANT_ID.match(args.tenant):
        parser.error(
            f"--tenant {args.tenant!r}: give a tenant name, or key:<the 64 hex digits of a key's hash>"
        )
    try:
        queries = load_queries(args.file)
    except (OSError, ValueError) as exc:
        print(f"batchgate: {exc}", file=sys.stderr)
        return 2

    settings = Settings.from_env()
    report_key = key_names.warm_report(settings.broker.key_prefix, secrets.token_hex(8))
    app = create_celery(settings)
    app.send_task(
        WARM_CACHE_TASK,
        args=[queries, args.rate, report_key],
        kwargs={"tenant": args.tenant},
        ignore_result=True,
    )
    print(f"warming {len(queries)} queries at ≤ {args.rate:g}/s", file=sys.stderr)
    if args.no_wait:
        return 0
    client = redis.Redis.from_url(settings.broker.redis_url, decode_responses=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        report = client.get(report_key)
        if report:
            print(json.dumps(json.loads(report)))
            return 0
        time.sleep(0.5)
    print("batchgate: no report yet (is a worker running?)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
