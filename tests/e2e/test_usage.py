"""What each tenant used and what it cost, end to end (real API, worker, beat, simulator and
google-genai SDK): the usage view sums exactly the tasks' own usage, all tenants together
match the simulator's own token counts (cached ones included: every tenant sends the same
long system text, and each gets its own cached share, never another's), and a tenant's
budget stops only that tenant."""

from __future__ import annotations

import secrets
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from api.budget_cli import main as budget_cli
from tests.clients import submit_and_collect
from tests.conftest import create_key, running_stack
from tests.e2e.test_bulk_lane import FAST_BULK
from tests.harness import http_json, start_beat, stop_all

TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens")
#: An agent's long instructions (about 3,000 tokens), the same text for every tenant.
LONG_SYSTEM = "You triage tickets for a paperclip shop; the escalation policy follows. " * 170


def _usage(api: str, key: str, query: str = "") -> dict[str, Any]:
    status, _, body = http_json("GET", f"{api}/api/v1/usage{query}", headers={"X-API-Key": key})
    assert status == 200, body
    return body


def test_each_tenants_usage_is_the_sum_of_its_tasks_and_all_of_it_is_what_the_model_counted(
    redis_url: str, logs_dir: Path
) -> None:
    with running_stack(redis_url, logs_dir, **FAST_BULK) as stack:
        tenants = {
            name: create_key(stack.env, "premium", tenant=name) for name in ("acme", "globex", "initech")
        }
        beat = start_beat(logs_dir, stack.env, name="beat-usage")
        try:
            # The probe: globex sends acme's long system text after acme, to read from its own
            # bill whether acme sent it lately. Its cache is its own: it reads nothing.
            probe = [
                {"prompt": f"{n} probe", "system": LONG_SYSTEM, "strategy": "concurrent"} for n in range(3)
            ]
            probed = [
                submit_and_collect(stack.api, [body], tenants[name]).bodies[0]
                for body, name in zip(probe, ("acme", "globex", "acme"), strict=True)
            ]
            bodies, keys, owners = [], [], []
            for n in range(990):
                name = list(tenants)[n % 3]
                body: dict[str, Any] = {"prompt": f"{name} question {n} {secrets.token_hex(2)}"}
                kind = (n // 3) % 9  # each tenant gets every kind
                if kind == 0:
                    body["stream"] = True
                elif kind == 1:
                    body["lane"] = "bulk"
                elif kind == 2:
                    body = {"prompt": f"{name} asked often"}  # the same prompt: cache hits
                elif kind == 3:
                    body["strategy"] = "concurrent"  # a call of its own
                elif kind in (4, 5):
                    body["system"] = LONG_SYSTEM  # packed after the long prefix, cached in part
                bodies.append(body)
                keys.append(tenants[name])
                owners.append(name)
            run = submit_and_collect(stack.api, bodies, keys, timeout=150)
            # Asked again once answered: from the response cache, each tenant its own.
            again = [{"prompt": f"{name} asked often"} for name in tenants for _ in range(5)]
            rerun = submit_and_collect(stack.api, again, [tenants[b["prompt"].split()[0]] for b in again])
        finally:
            stop_all(beat)
        stats = http_json("GET", f"{stack.simulator}/_sim/stats")[2]
        views = {name: _usage(stack.api, key, "?group_by=model") for name, key in tenants.items()}
        status, _, metrics = http_json("GET", f"{stack.api}/metrics")
    assert not run.failures and not rerun.failures, (run.failures + rerun.failures)[:5]
    cached = [body["result"]["usage"]["cached_input_tokens"] for body in probed if body]
    assert len(cached) == 3 and cached[0] == 0 and cached[1] == 0 and cached[2] >= 2048, cached
    owners = ["acme", "globex", "acme", *owners, *(b["prompt"].split()[0] for b in again)]
    summed: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, body in zip(owners, probed + run.bodies + rerun.bodies, strict=True):
        assert body is not None and body["status"] == "succeeded", body
        summed[name]["requests"] += 1
        if body.get("cached"):
            summed[name]["cache_hits"] += 1
            continue  # a cache hit reuses an answer: it costs no tokens
        usage = body["result"]["usage"]
        for count in (*TOKENS, "cost_usd"):
            summed[name][count] += usage.get(count, 0)
    for name, view in views.items():
        totals = view["totals"]
        assert totals["requests"] == summed[name]["requests"] == 335 + {"acme": 2, "globex": 1}.get(name, 0)
        assert totals["cached_input_tokens"] > 2048 * 10, name  # its long system text, cached for it
        assert totals["cache_hits"] == summed[name]["cache_hits"] >= 5
        for count in TOKENS:
            assert totals[count] == summed[name][count], (name, count)
        assert totals["cost_usd"] == pytest.approx(summed[name]["cost_usd"], abs=1e-9)
        assert totals["cost_usd"] > 0 and totals["failures"] == 0
        assert [g["model"] for g in view["groups"]] == ["gemini-2.5-flash"]
        assert view["groups"][0]["input_tokens"] == totals["input_tokens"]
    assert status == 200
    for name, view in views.items():  # Prometheus per tenant: the same counts
        line = f'batchgate_tenant_tokens_total{{kind="input",tenant="{name}"}} '
        assert f"{line}{float(view['totals']['input_tokens'])}" in metrics, name
    model_input = stats["prompt_tokens"] + stats["batch_prompt_tokens"]
    model_output = stats["output_tokens"] + stats["batch_output_tokens"]
    assert sum(v["totals"]["input_tokens"] for v in views.values()) == pytest.approx(model_input, rel=0.01)
    assert sum(v["totals"]["output_tokens"] for v in views.values()) == pytest.approx(model_output, rel=0.01)
    model_cached = stats["cached_tokens"] + stats["batch_cached_tokens"]
    assert sum(v["totals"]["cached_input_tokens"] for v in views.values()) == pytest.approx(
        model_cached, rel=0.01
    )


def test_a_tenant_past_its_budget_is_refused_and_no_other_tenant_is(
    redis_url: str, logs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_stack(redis_url, logs_dir) as stack:
        capped, other = (
            create_key(stack.env, "premium", tenant="capped"),
            create_key(stack.env, "premium", tenant="free"),
        )
        for name, value in stack.env.items():
            monkeypatch.setenv(name, value)
        assert budget_cli(["budget", "--tenant", "capped", "--tokens", "20000"]) == 0
        for round_ in range(60):
            run = submit_and_collect(
                stack.api, [{"prompt": f"spend {round_} {n} " + "word " * 150} for n in range(8)], capped
            )
            if run.failures:
                break
        else:
            pytest.fail(f"never refused: {_usage(stack.api, capped)['totals']}")
        assert all("budget_exhausted" in failure for failure in run.failures), run.failures
        status, headers, body = http_json(
            "POST", f"{stack.api}/api/v1/tasks", {"prompt": "one more"}, headers={"X-API-Key": capped}
        )
        assert status == 429 and body["error"]["code"] == "budget_exhausted", body
        assert "renews at" in body["error"]["message"] and int(headers["Retry-After"]) > 0
        view = _usage(stack.api, capped)
        assert view["budgets"][0]["exhausted"] and view["budgets"][0]["warning"]
        assert view["totals"]["input_tokens"] + view["totals"]["output_tokens"] >= 20000 * 0.8
        # Another tenant is not affected.
        ok = submit_and_collect(stack.api, [{"prompt": f"free {n}"} for n in range(5)], other)
        assert not ok.failures and all(b and b["status"] == "succeeded" for b in ok.bodies)
        assert _usage(stack.api, other)["budgets"] == []
