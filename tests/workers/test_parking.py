"""With ``BATCHGATE_DAY_QUOTA_ACTION=park``, tasks that a spent day quota stops wait for the reset
instead of failing, and the orphan sweeper sends them again at midnight Pacific (real Redis,
the worker's own runtime and engine, the simulator's RPD quota behind the real google-genai
client)."""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from batchgate.broker import Publisher
from batchgate.settings import Settings, SettingsError
from batchgate.taskstore import QUEUED, SUCCEEDED
from batching.daily_quota import DAILY_QUOTA_EXHAUSTED, seconds_to_pacific_midnight
from batching.simulator.answers import answer_for
from batching.simulator.server import SimulatorThread
from tests.conftest import stack_env
from tests.harness import http_json
from tests.workers.test_orphan_sweeper import queued_ids, whereabouts
from tests.workers.test_process_batch import deliver
from workers.app import create_celery
from workers.batch_job import process_batch
from workers.orphan_sweeper import sweep
from workers.runtime import WorkerRuntime

MODEL = "gemini-2.5-flash"


def test_parked_tasks_wait_for_the_day_quota_and_are_sent_again_at_the_reset(
    redis_url: str, redis_client: redis.Redis, sim: SimulatorThread
) -> None:
    http_json("POST", f"{sim.url}/_sim/reset")
    assert http_json("POST", f"{sim.url}/_sim/config", {"rpd": 1})[0] == 200
    env = {
        **stack_env(redis_url),
        "BATCHGATE_SIMULATOR_URL": sim.url,
        "BATCHGATE_DAY_QUOTA_ACTION": "park",
    }
    settings = Settings.from_env(env)
    ctx = WorkerRuntime(settings).batch_context
    store = ctx.store
    (first,) = deliver(store, [{"prompt": f"today {secrets.token_hex(3)}", "model": MODEL}])
    assert [o.status for o in process_batch([first], ctx)] == [SUCCEEDED]

    prompts = [f"can wait {n} {secrets.token_hex(3)}" for n in range(3)]
    later = deliver(store, [{"prompt": p, "model": MODEL} for p in prompts])
    parked_at = time.time()
    assert [o.status for o in process_batch(later, ctx)] == [QUEUED] * 3
    until = parked_at + seconds_to_pacific_midnight(parked_at)
    for delivery in later:
        record = store.get(delivery.task_id)
        assert record is not None and record["status"] == QUEUED and "error" not in record
        assert record["parked"]["code"] == DAILY_QUOTA_EXHAUSTED
        assert record["parked"]["until"] == pytest.approx(until, abs=5)
        assert redis_client.ttl(store.key(delivery.task_id)) > until - parked_at  # outlives the wait
        due = store.entered_at(delivery.task_id)  # when the sweeper finds it overdue
        assert due is not None and due + settings.broker.orphan_after_s == pytest.approx(until, abs=5)
    stats = http_json("GET", f"{sim.url}/_sim/stats")[2]
    assert stats["errors_by_code"] == {"429:rpd": 1}  # one packed call refused

    publisher = Publisher(create_celery(settings), settings)
    seen = whereabouts(redis_client, settings)
    before = sweep(store, publisher, until - 60, settings.broker.orphan_after_s, 3, seen)
    assert before.requeued == 0 and queued_ids(redis_client, settings.broker.queue) == []

    # Midnight Pacific: Gemini's day starts afresh, and the sweeper sends the parked tasks.
    http_json("POST", f"{sim.url}/_sim/reset")
    report = sweep(store, publisher, until + 1, settings.broker.orphan_after_s, 3, seen)
    assert report.requeued == 3 and report.failed == 0
    assert sorted(queued_ids(redis_client, settings.broker.queue)) == sorted(d.task_id for d in later)
    for delivery in later:
        record = store.get(delivery.task_id)
        assert record is not None and "parked" not in record and not record.get("recoveries")

    tomorrow = WorkerRuntime(settings).batch_context  # a worker process started after the reset
    outcomes = {o.task_id: o for o in process_batch(later, tomorrow)}
    for delivery, prompt in zip(later, prompts, strict=True):
        assert outcomes[delivery.task_id].status == SUCCEEDED
        assert store.get(delivery.task_id)["result"]["text"] == answer_for(prompt)  # type: ignore[index]


def test_the_day_quota_action_is_fail_or_park() -> None:
    assert Settings.from_env({}).gemini.day_quota_action == "fail"
    with pytest.raises(SettingsError, match="DAY_QUOTA_ACTION"):
        Settings.from_env({"BATCHGATE_DAY_QUOTA_ACTION": "retry"})
    with pytest.raises(SettingsError, match="QUOTAS"):
        Settings.from_env({"BATCHGATE_MODEL_QUOTAS": "gemini-2.5-pro:rpm=lots"})
