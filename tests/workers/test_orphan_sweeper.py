"""Delivery: the visibility timeout where kombu reads it, and the orphan sweeper that
re-enqueues requests whose message went missing."""

from __future__ import annotations

import json
import secrets

import pytest
import redis

from batchgate.broker import Publisher
from batchgate.settings import Settings, SettingsError
from batchgate.taskstore import SUCCEEDED, Outcome, TaskStore
from batching.simulator.answers import answer_for
from tests.conftest import Stack
from tests.harness import wait_until
from workers.app import create_celery
from workers.leases import oldest_queued_task
from workers.orphan_sweeper import Whereabouts, sweep


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
    assert settings.broker.visibility_timeout_s >= settings.longest_batch_s
    with pytest.raises(SettingsError, match="VISIBILITY_TIMEOUT"):
        Settings.from_env({"BATCHGATE_VISIBILITY_TIMEOUT_S": "120"})
    with pytest.raises(SettingsError, match="ORPHAN_AFTER"):
        Settings.from_env({"BATCHGATE_ORPHAN_AFTER_S": "15"})  # a dead worker's lease goes first


def queued_ids(client: redis.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


def whereabouts(client: redis.Redis, settings: Settings, held: set[str] | None = None) -> Whereabouts:
    return Whereabouts(
        held=lambda: set(held or ()), oldest_queued=lambda: oldest_queued_task(client, settings.broker.queue)
    )


def test_sweeper_requeues_lost_tasks_then_fails_them_and_forgets_finished_ones(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = settings_for(redis_url)
    store = TaskStore(redis_client, settings.broker.key_prefix, 3600)
    publisher = Publisher(create_celery(settings), settings)
    seen = whereabouts(redis_client, settings)
    store.create("lost", {"prompt": "p", "model": "m"}, 100.0, "owner")
    store.create("fresh", {"prompt": "q", "model": "m"}, 990.0, "owner")
    store.create("done", {"prompt": "r", "model": "m"}, 100.0, "owner")
    store.finish([Outcome("done", SUCCEEDED, {"text": "x"}, None, {})], 101.0)
    store.create("expired", {"prompt": "s", "model": "m"}, 100.0, "owner")
    redis_client.delete(store.key("expired"))

    report = sweep(store, publisher, now=1000.0, orphan_after_s=60, max_recoveries=2, whereabouts=seen)
    assert (report.overdue, report.requeued, report.failed, report.forgotten) == (2, 1, 0, 1)
    assert queued_ids(redis_client, settings.broker.queue) == ["lost"]
    assert store.get("lost")["recoveries"] == 1  # type: ignore[index]
    # Its clock restarted: not overdue again until another orphan_after_s has passed.
    assert (
        sweep(store, publisher, now=1030.0, orphan_after_s=60, max_recoveries=2, whereabouts=seen).requeued
        == 0
    )
    # Its message now waits in the queue (nobody consumes here): it is not lost, not counted;
    # "fresh", older than anything in the queue, is.
    later = sweep(store, publisher, now=1061.0, orphan_after_s=60, max_recoveries=2, whereabouts=seen)
    assert (later.requeued, later.waiting) == (1, 1)
    assert queued_ids(redis_client, settings.broker.queue) == ["fresh", "lost"]
    # Lost every time (the queue emptied by something that drops messages): failed at last.
    redis_client.delete(settings.broker.queue)
    again = sweep(store, publisher, now=1122.0, orphan_after_s=60, max_recoveries=2, whereabouts=seen)
    assert again.requeued == 2
    redis_client.delete(settings.broker.queue)
    final = sweep(store, publisher, now=1183.0, orphan_after_s=60, max_recoveries=2, whereabouts=seen)
    assert final.failed == 2
    record = store.get("lost")
    assert record is not None and record["status"] == "failed"
    assert record["error"]["code"] == "lost_in_transit"
    assert redis_client.zrange(store.inflight_key, 0, -1) == []


def test_a_backlog_or_a_live_worker_is_not_a_loss(redis_url: str, redis_client: redis.Redis) -> None:
    """After an outage the queue holds a backlog older than orphan_after_s: it drains, it is
    not re-enqueued past backpressure; a task a live worker holds is not lost either."""
    settings = settings_for(redis_url)
    store = TaskStore(redis_client, settings.broker.key_prefix, 3600)
    publisher = Publisher(create_celery(settings), settings)
    for n in range(5):
        store.create(f"backlog-{n}", {"prompt": f"p{n}", "model": "m"}, 100.0 + n, "owner")
        publisher.publish(f"backlog-{n}", {"prompt": f"p{n}", "model": "m"}, 100.0 + n)
    store.create("buffered", {"prompt": "b", "model": "m"}, 50.0, "owner")  # older than the backlog
    report = sweep(store, publisher, 1000.0, 60, 2, whereabouts(redis_client, settings, held={"buffered"}))
    assert (report.overdue, report.requeued, report.waiting) == (6, 0, 6)
    assert len(queued_ids(redis_client, settings.broker.queue)) == 5


def test_a_request_whose_message_was_lost_is_answered_after_a_sweep(stack: Stack) -> None:
    """The record exists (the API wrote it) but no message reached the broker."""
    settings = Settings.from_env(stack.env)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        store = TaskStore(client, settings.broker.key_prefix, 3600)
        prompt = f"lost message {secrets.token_hex(4)}"
        task_id = secrets.token_hex(16)
        store.create(task_id, {"prompt": prompt, "model": settings.gemini.model}, 1.0, None)
        seen = whereabouts(client, settings)
        report = sweep(store, Publisher(create_celery(settings), settings), 1e9, 60, 3, seen)
        assert report.requeued >= 1
        record = wait_until(
            lambda: (r := store.get(task_id)) and r["status"] == SUCCEEDED and r, 20, "the recovered task"
        )
        assert record["result"]["text"] == answer_for(prompt)
        assert client.zscore(store.inflight_key, task_id) is None
    finally:
        client.close()
