"""The message the API writes with a task's record is the one Celery's ``send_task`` sends.

If a Celery or kombu upgrade changes what a task message looks like on the Redis list, these
fail here instead of the worker refusing (or misreading) the API's messages in production.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import redis

from batchgate.broker import Publisher
from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from workers.app import create_celery


def _settings(redis_url: str) -> Settings:
    return Settings.from_env(
        {
            "BATCHGATE_REDIS_URL": redis_url,
            "BATCHGATE_QUEUE": f"q-{secrets.token_hex(4)}",
            "BATCHGATE_KEY_PREFIX": f"t{secrets.token_hex(3)}",
        }
    )


def _without_tag(raw: bytes | str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    tag = message["properties"].pop("delivery_tag")
    assert isinstance(tag, str) and len(tag) == 36
    return message


def test_written_message_equals_what_send_task_sends(redis_url: str, redis_client: redis.Redis) -> None:
    settings = _settings(redis_url)
    publisher = Publisher(create_celery(settings), settings)
    request = {"model": "m", "prompt": "summarise ünïcode", "tenant": "key:abc"}
    publisher.publish("t1", request, 12.5)
    sent = redis_client.lpop(settings.broker.queue)
    queued = publisher.queued_message("t1", request, 12.5)
    assert sent is not None and queued is not None
    assert queued.list_key == settings.broker.queue
    assert _without_tag(queued.payload) == _without_tag(sent)
    args, kwargs, _embed = json.loads(base64.b64decode(json.loads(queued.payload)["body"]))
    assert args == [] and kwargs == {"request": request, "submitted_at": 12.5}


def test_each_message_has_its_own_delivery_tag(redis_url: str) -> None:
    settings = _settings(redis_url)
    publisher = Publisher(create_celery(settings), settings)
    first = publisher.queued_message("t1", {"model": "m", "prompt": "p"}, 1.0)
    second = publisher.queued_message("t1", {"model": "m", "prompt": "p"}, 1.0)
    assert first is not None and second is not None
    assert (
        json.loads(first.payload)["properties"]["delivery_tag"]
        != json.loads(second.payload)["properties"]["delivery_tag"]
    )


def test_other_brokers_publish_through_celery() -> None:
    settings = Settings.from_env({"BATCHGATE_REDIS_URL": "rediss://127.0.0.1:6390/0"})
    publisher = Publisher(create_celery(settings), settings)
    assert publisher.queued_message("t1", {"model": "m", "prompt": "p"}, 1.0) is None


def test_record_and_message_are_written_together_or_not_at_all(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A second attempt under the same id (a retry) neither overwrites the record nor sends
    the task a second time."""
    settings = _settings(redis_url)
    publisher = Publisher(create_celery(settings), settings)
    store = TaskStore(redis_client, settings.broker.key_prefix, settings.broker.task_ttl_s)
    request = {"model": "m", "prompt": "p"}
    assert store.create("t1", request, 1.0, "owner", message=publisher.queued_message("t1", request, 1.0))
    assert redis_client.llen(settings.broker.queue) == 1
    assert (store.get("t1") or {}).get("status") == "queued"
    again = {"model": "m", "prompt": "other"}
    assert not store.create("t1", again, 2.0, "owner", message=publisher.queued_message("t1", again, 2.0))
    assert redis_client.llen(settings.broker.queue) == 1
    assert (store.get("t1") or {}).get("request") == request
