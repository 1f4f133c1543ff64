"""The publisher enqueues the whole request but shows only its sizes in the message headers."""

from __future__ import annotations

import json
import secrets

import redis

from batchgate.broker import Publisher
from batchgate.settings import Settings
from workers.app import create_celery


def test_message_carries_the_request_and_headers_carry_no_prompt(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = Settings.from_env(
        {"BATCHGATE_REDIS_URL": redis_url, "BATCHGATE_QUEUE": f"q-{secrets.token_hex(4)}"}
    )
    prompt = "a secret prompt that must not reach any log"
    Publisher(create_celery(settings), settings).publish("t1", {"model": "m", "prompt": prompt}, 1.0)
    raw = redis_client.lpop(settings.broker.queue)
    assert raw is not None
    message = json.loads(raw)
    headers = message["headers"]
    assert headers["id"] == "t1" and headers["argsrepr"] == "()"
    assert headers["kwargsrepr"] == f"{{model: m, prompt: {len(prompt)} chars}}"
    assert prompt not in json.dumps(headers)


def test_celery_speaks_json_only() -> None:
    """A pickled message on the broker would be code run by the worker: JSON is all it takes."""
    conf = create_celery(Settings.from_env({})).conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"
    assert conf.result_accept_content in (None, ["json"])  # None: accept_content applies
