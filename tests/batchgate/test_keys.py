"""Every Redis key, channel and prefix is named in one module (``batchgate.keys``): the names
are stable (a rename strands what a running cluster wrote) and nobody else spells one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from batchgate import keys

REPO = Path(__file__).resolve().parents[2]

#: Each name builder, called with a prefix "bg" and placeholder arguments, and what it names.
NAMES = {
    keys.workers_key: "bg:workers",
    keys.metrics_latest_key: "bg:metrics:latest",
    keys.metrics_channel: "bg:metrics",
    keys.task: "bg:task:{0}",
    keys.task_deltas: "bg:task:{0}:deltas",
    keys.done_channel: "bg:done",
    keys.progress_channel: "bg:progress",
    keys.inflight: "bg:inflight",
    keys.api_key: "bg:apikey:{0}",
    keys.api_keys: "bg:apikeys",
    keys.tenants: "bg:tenants",
    keys.tenant_inflight_prefix: "bg:tenant-inflight:",
    keys.bucket: "bg:bucket:{0}",
    keys.backpressure: "bg:backpressure",
    keys.idempotency: "bg:idem:{0}:{1}",
    keys.cache_prefix: "bg:cache:",
    keys.cache_entry: "bg:cache:{0}:{1}",
    keys.session: "bg:session:{0}",
    keys.lease_holders: "bg:lease-holders",
    keys.lease_prefix: "bg:lease:",
    keys.model_quota: "bg:quota:{0}:{1}",
    keys.usage_prefix: "bg:usage:",
    keys.usage: "bg:usage:{0}:{1}",
    keys.usage_tenants: "bg:usage-tenants:{0}",
    keys.budget: "bg:budget:{0}",
    keys.budgeted_tenants: "bg:budgeted-tenants",
    keys.bulk_pending: "bg:bulk:pending",
    keys.bulk_held: "bg:bulk:held:{0}",
    keys.warm_report: "bg:warm:{0}",
    keys.metrics_slot: "bg:m:{0}:{1}",
    keys.metrics_streams: "bg:metrics:streams:{0}",
    keys.baseline_active: "bg:baseline:active",
    keys.drift_latest: "bg:drift:latest",
}


def test_every_name_is_listed_and_stable() -> None:
    builders = {f for _, f in inspect.getmembers(keys, inspect.isfunction) if f.__module__ == keys.__name__}
    assert builders == set(NAMES)
    for build, expected in NAMES.items():
        extra = [f"a{n}" for n in range(len(inspect.signature(build).parameters) - 1)]
        assert build("bg", *extra) == expected.format(*extra)


def test_no_other_module_spells_a_key() -> None:
    spelled = re.compile(r'f"\{[\w.]*prefix\}:')
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("api", "workers", "batching", "baseline", "batchgate", "loadtest")
        for path in (REPO / folder).rglob("*.py")
        if path != REPO / "batchgate" / "keys.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if spelled.search(line)
    ]
    assert offenders == []
