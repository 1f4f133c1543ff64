"""Delivery: the visibility timeout where kombu reads it, and the orphan sweeper that
re-enqueues requests whose message went missing."""

from __future__ import annotations

import json
import secrets

import pytest
import redis

from batchgate.settings import Settings, SettingsError
from batchgate.taskstore import SUCCEEDED, Outcome, TaskStore
from batching.simulator.answers import answer_for
from tests.conftest import Stack
from tests.harness import wait_until
from workers.app import create_celery
from workers.orphan_sweeper import sweep
from workers.publisher import Publisher


def settings_for(redis_url: str, **extra: str) -> Settings:
    tag = secrets.token_hex(4)
    return Settings.from_env(
        {
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_QUEUE": f"q-{tag}",
            "BATCHGATE_KEY_PREFIX": f"bg-{tag}",
            **extra,
        }
    )


def test_the_visibility_timeout_is_what_kombus_redis_channel_uses(redis_url: str) -> None:
    settings = settings_for(redis_url, BATCHGATE_VISIBILITY_TIMEOUT_S="432", BATCHGATE_ORPHAN_AFTER_S="500")
    app = create_celery(settings)
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        assert channel.visibility_timeout == 432
        # Overdue messages are looked for every 10 s, not kombu's default of about 100 s.
        assert channel.unacked_restore_interval == 10 and channel.unacked_restore_throttle == 1
        assert channel.unacked_mutex_expire == 432


def test_the_visibility_timeout_must_cover_the_longest_batch() -> None:
    settings = Settings.from_env({})
    # Window + 5 attempts of 60 s timeout + 4 backoffs of 8 s + 30 s session wait.
    assert settings.longest_batch_s == pytest.approx(0.1 + 300 + 32 + 30)
    assert settings.visibility_timeout_s >= settings.longest_batch_s
    with pytest.raises(SettingsError, match="VISIBILITY_TIMEOUT"):
        Settings.from_env({"BATCHGATE_VISIBILITY_TIMEOUT_S": "120"})
    with pytest.raises(SettingsError, match="ORPHAN_AFTER"):
        Settings.from_env({"BATCHGATE_ORPHAN_AFTER_S": "600"})


def queued_ids(client: redis.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


def test_sweeper_requeues_overdue_tasks_then_fails_them_and_forgets_finished_ones(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(redis_url)
    store = TaskStore(redis_client, settings.key_prefix, 3600)
    publisher = Publisher(create_celery(settings), settings)
    store.create("lost", {"prompt": "p", "model": "m"}, 100.0, "owner")
    store.create("fresh", {"prompt": "q", "model": "m"}, 990.0, "owner")
    store.create("done", {"prompt": "r", "model": "m"}, 100.0, "owner")
    store.finish([Outcome("done", SUCCEEDED, {"text": "x"}, None, {})], 101.0)
    store.create("expired", {"prompt": "s", "model": "m"}, 100.0, "owner")
    redis_client.delete(store.key("expired"))

    report = sweep(store, publisher, now=1000.0, orphan_after_s=60, max_recoveries=2)
    assert (report.overdue, report.requeued, report.failed, report.forgotten) == (2, 1, 0, 1)
    assert queued_ids(redis_client, settings.queue) == ["lost"]
    assert store.get("lost")["recoveries"] == 1  # type: ignore[index]
    # Its clock restarted: not overdue again until another orphan_after_s has passed.
    assert sweep(store, publisher, now=1030.0, orphan_after_s=60, max_recoveries=2).requeued == 0
    assert sweep(store, publisher, now=1061.0, orphan_after_s=60, max_recoveries=2).requeued == 2  # + fresh
    final = sweep(store, publisher, now=1122.0, orphan_after_s=60, max_recoveries=2)
    assert final.failed == 1  # "lost" used up its recoveries
    record = store.get("lost")
    assert record is not None and record["status"] == "failed"
    assert record["error"]["code"] == "lost_in_transit"
    assert redis_client.zrange(store.inflight_key, 0, -1) == ["fresh"]


def test_a_request_whose_message_was_lost_is_answered_after_a_sweep(stack: Stack) -> None:
    """The record exists (the API wrote it) but no message reached the broker."""
    settings = Settings.from_env(stack.env)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        store = TaskStore(client, settings.key_prefix, 3600)
        prompt = f"lost message {secrets.token_hex(4)}"
        task_id = secrets.token_hex(16)
        store.create(task_id, {"prompt": prompt, "model": settings.model}, 1.0, None)
        report = sweep(store, Publisher(create_celery(settings), settings), 1e9, 60, 3)
        assert report.requeued >= 1
        record = wait_until(
            lambda: (r := store.get(task_id)) and r["status"] == SUCCEEDED and r, 20, "the recovered task"
        )
        assert record["result"]["text"] == answer_for(prompt)
        assert client.zscore(store.inflight_key, task_id) is None
    finally:
        client.close()
