"""The Python client against a running stack (real API, worker, simulator): the README's
example as printed, sync and async, idempotent retries, events resumed, a spent budget."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from batchgate_client import AsyncClient, Budget, BudgetExhausted, Client

from tests.conftest import Stack, create_key, running_stack

README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"


@pytest.fixture(scope="module")
def stack(redis_url: str, logs_dir: Path) -> Stack:  # type: ignore[misc]
    with running_stack(redis_url, logs_dir) as running:
        yield running


def test_the_readme_example_runs_as_printed(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    source = (
        code.group(1)
        .replace('"http://127.0.0.1:8080"', repr(stack.api))
        .replace('"bg_..."', repr(stack.api_key))
    )
    exec(compile(source, str(README), "exec"), {})  # our own README's example, as printed
    out = capsys.readouterr().out
    assert "cost_usd=" in out and "UsageTotals(requests=" in out


def test_submit_wait_and_events_with_the_sync_client(stack: Stack) -> None:
    with Client(stack.api, stack.api_key) as client:
        task = client.run("What is a paperclip for?")
        assert task.done and task.status == "succeeded" and task.text
        assert (
            task.result is not None and task.result.usage.input_tokens > 0 and task.result.usage.cost_usd > 0
        )
        streamed = client.submit("Tell me about staplers", stream=True)
        events = list(client.events(streamed.id))
        assert events[0].event == "queued" and events[-1].event == "succeeded"
        assert [e.id for e in events] == sorted(e.id for e in events)
        # Resumed after the second event: only what came after it.
        assert [e.id for e in client.events(streamed.id, last_event_id=2)] == [
            e.id for e in events if e.id > 2
        ]
        month = client.usage(group_by="day")
        assert month.totals.requests >= 2 and month.totals.cost_usd > 0 and month.group_by == "day"
        assert sum(day.totals.requests for day in month.groups) == month.totals.requests


def test_the_same_idempotency_key_is_the_same_task(stack: Stack) -> None:
    with Client(stack.api, stack.api_key) as client:
        first = client.submit("Idempotent question", idempotency_key="job-42")
        again = client.submit("Idempotent question", idempotency_key="job-42")
        assert first.id == again.id
        assert client.wait(first.id).status == "succeeded"


def test_the_async_client_runs_tasks_concurrently(stack: Stack) -> None:
    async def main() -> list[str]:
        async with AsyncClient(stack.api, stack.api_key) as client:
            tasks = await asyncio.gather(*(client.run(f"async question {n}") for n in range(6)))
            events = [e.event async for e in client.events(tasks[0].id)]
            assert events[-1] == "succeeded"
            assert (await client.usage()).totals.requests >= len(tasks)
            return [t.text for t in tasks]

    texts = asyncio.run(main())
    assert len(texts) == 6 and all(texts)


def test_a_spent_budget_is_raised_at_once_not_retried(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.budget_cli import main as budget_cli

    key = create_key(stack.env, "premium", tenant="client-capped")
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    assert budget_cli(["budget", "--tenant", "client-capped", "--tokens", "0"]) == 0
    with Client(stack.api, key) as client:
        with pytest.raises(BudgetExhausted) as refused:
            client.submit("anything")
        assert refused.value.retry_after_s and refused.value.retry_after_s > 0
        assert client.budgets() == (
            Budget(
                key=None,
                tokens=0,
                usd=None,
                used_tokens=0,
                used_usd=0.0,
                share=None,
                warning=True,
                exhausted=True,
            ),
        )
