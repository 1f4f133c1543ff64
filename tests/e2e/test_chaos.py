"""The fault harness: its cluster runs on the shipped defaults, and a short fault run (every
fault of ``make chaos``, on those defaults) loses and duplicates nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from batchgate.settings import Settings
from stack.chaos import HARNESS_SETTINGS, PLAN, chaos_env, run_chaos
from stack.chaos_counts import line

#: What the harness may set besides the rate limit it raises: where things are.
PLACES = {
    "redis_url",
    "api_ports",
    "nginx_port",
    "nginx_tls_port",
    "flower_port",
    "simulator",
    "embedded_simulator_url",
    "run_dir",
    "demo_api_key",
}


def _flat(settings: Settings) -> dict[str, object]:
    """Every field of every section by its name (names are unique across sections); the
    simulator as one value."""
    flat: dict[str, object] = {"simulator": settings.simulator}
    for section in dataclasses.fields(Settings):
        if section.name != "simulator":
            flat.update(dataclasses.asdict(getattr(settings, section.name)))
    return flat


def test_the_fault_cluster_runs_on_the_shipped_defaults(tmp_path: Path) -> None:
    shell = {"BATCHGATE_VISIBILITY_TIMEOUT_S": "10", "BATCHGATE_WORKER_LEASE_S": "4", "PATH": "/usr/bin"}
    env = chaos_env(tmp_path, shell)
    assert env["PATH"] == "/usr/bin" and "BATCHGATE_WORKER_LEASE_S" not in env  # the shell's are dropped
    settings, shipped = Settings.from_env(env), Settings()
    differ = {name for name, value in _flat(settings).items() if value != _flat(shipped)[name]}
    assert differ - PLACES == {"redis_appendonly", "tier_premium_rate", "tier_premium_burst"}
    assert set(HARNESS_SETTINGS) == {"BATCHGATE_" + name.upper() for name in differ - PLACES}
    assert settings.simulator == dataclasses.replace(shipped.simulator, port=settings.simulator.port)
    assert (
        len(
            {
                settings.stack.nginx_port,
                settings.stack.nginx_tls_port,
                settings.stack.flower_port,
                *settings.api.api_ports,
            }
        )
        == 6
    )


def test_a_short_fault_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Workers killed twice, an API replica killed under 20 same-key retries, Redis down for
    10 s and restarted, blocked prompts in many batches: 30 s of load on the defaults."""
    counts = run_chaos(n=600, rate=20, run_dir=tmp_path, drain_s=45)
    report = json.loads((tmp_path / "chaos-report.json").read_text())
    # Each lost task as Redis holds it: queued or running, and under which worker's claim.
    lost = [(t["task_id"], t["stored"].get("status"), t["stored"].get("claimed_by")) for t in report["lost"]]
    why = f"{line(counts)} lost: {lost} (report: {tmp_path / 'chaos-report.json'})"
    assert counts["faults"] == sum(1 for f in PLAN if f.action != "same-key") == 5
    assert counts["submitted"] == counts["accepted"] == 601, why  # 600 and the same-key request
    assert counts["lost"] == 0, why
    assert counts["duplicated_results"] == 0, why
    assert counts["unexpected"] == 0, why
    assert counts["expected_failures"] == 15 and counts["blocked_batches"] >= 5, why
    assert counts["batch_mates"] > 0 and counts["batch_mates_not_ok"] == 0, why
    assert (counts["same_key_clients"], counts["same_key_ids"], counts["same_key_answers"]) == (20, 1, 1), why
    assert counts["max_latency_s"] <= 60, why
