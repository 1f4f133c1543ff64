"""The broker's Redis transport builds one Redis client per channel, not one per message, and
what it publishes arrives intact."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.backends.redis import RedisBackend
from flower.utils.broker import Broker
from flower.utils.broker import Redis as FlowerRedis
from kombu import Queue

from batchgate import redis_transport
from batchgate.broker import Publisher, broker_app
from batchgate.settings import Settings
from workers.app import create_celery

#: Messages per test: far more than the few clients a channel may build.
N = 200


def settings_for(redis_url: str) -> Settings:
    tag = secrets.token_hex(4)
    return Settings.from_env(
        {"BATCHGATE_REDIS_URL": redis_url, "BATCHGATE_QUEUE": f"q-{tag}", "BATCHGATE_KEY_PREFIX": f"bg-{tag}"}
    )


@pytest.fixture
def sync_clients_built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every synchronous client our channels build (the BRPOP/LISTEN ones are not counted)."""
    built: list[Any] = []
    original = redis_transport.Channel._create_client

    def counting(channel: redis_transport.Channel, asynchronous: bool = False) -> Any:
        client = original(channel, asynchronous=asynchronous)
        if not asynchronous:
            built.append(client)
        return client

    monkeypatch.setattr(redis_transport.Channel, "_create_client", counting)
    return built


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis) -> Iterator[Settings]:
    settings = settings_for(redis_url)
    yield settings
    redis_client.delete(settings.broker.queue)


@pytest.mark.parametrize("factory", [broker_app, create_celery], ids=["api", "worker"])
def test_publishing_n_messages_builds_one_client_and_they_arrive_intact(
    factory: Any, settings: Settings, sync_clients_built: list[Any]
) -> None:
    app = factory(settings)
    publisher = Publisher(app, settings)
    for i in range(N):
        publisher.publish(f"t{i}", {"model": "m", "prompt": f"prompt {i}"}, float(i))
    assert len(sync_clients_built) <= 2  # one per channel the producer pool opened: one here

    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, redis_transport.Transport)
        queue = Queue(settings.broker.queue, channel=connection.default_channel)
        received = []
        while (message := queue.get(no_ack=True)) is not None:
            received.append(message)
    assert [m.headers["id"] for m in received] == [f"t{i}" for i in range(N)]
    for i, message in enumerate(received):
        args, kwargs, _ = json.loads(message.body)
        assert args == [] and kwargs == {
            "request": {"model": "m", "prompt": f"prompt {i}"},
            "submitted_at": i,
        }
    assert len(sync_clients_built) <= 3  # consuming adds at most the reading channel's one


def test_fanout_events_share_the_client_too(
    redis_url: str, settings: Settings, sync_clients_built: list[Any]
) -> None:
    """The worker's task events go out through ``_put_fanout``: one PUBLISH each, one client."""
    app = create_celery(settings)
    kind = f"task-check{secrets.token_hex(4)}"  # other tests' workers share this Redis
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.psubscribe("*celeryev*")
    try:
        assert listener.get_message(timeout=5.0)["type"] == "psubscribe"  # subscribed before sending
        with app.producer_pool.acquire(block=True) as producer:
            dispatcher = app.events.Dispatcher(producer.connection, channel=producer.channel)
            for i in range(N):
                dispatcher.send(kind, n=i)
            dispatcher.close()
        numbers = []
        while (message := listener.get_message(timeout=1.0)) is not None:
            payload = json.loads(message["data"])
            assert payload["properties"]["body_encoding"] == "base64"
            event = json.loads(base64.b64decode(payload["body"]))
            if event["type"] == kind:
                numbers.append(event["n"])
    finally:
        listener.close()
    assert numbers == list(range(N))
    assert len(sync_clients_built) <= 2


def test_a_channel_keeps_one_client_on_its_current_pool(settings: Settings) -> None:
    with broker_app(settings).connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        # The BRPOP client stays apart, on its own pool.
        assert channel.client is not first and channel.client.connection_pool is channel.async_pool
        own = redis.Redis(connection_pool=channel.pool)
        with channel.conn_or_acquire(own) as given:
            assert given is own
        channel._disconnect_pools()  # what kombu does after a fork: a new pool, so a new client
        with channel.conn_or_acquire() as after:
            assert after is not first and after.connection_pool is channel.pool
            assert after.ping()


def test_only_plain_redis_urls_get_the_transport() -> None:
    assert redis_transport.transport_for("redis://127.0.0.1:6379/0") == redis_transport.TRANSPORT_PATH
    # kombu turns TLS on from the rediss scheme, which a named transport would hide from it.
    assert redis_transport.transport_for("rediss://example.com:6380/0") is None
    assert redis_transport.transport_for("sentinel://127.0.0.1:26379") is None


def test_the_broker_still_shows_as_redis(settings: Settings) -> None:
    """Worker banners and Flower read the scheme of ``as_uri()``: Flower's broker page and
    queue lengths pick their Redis client by it."""
    with create_celery(settings).connection_for_write() as connection:
        assert connection.as_uri(include_password=True) == settings.broker.redis_url
        assert isinstance(Broker(connection.as_uri(include_password=True)), FlowerRedis)
        with connection.clone() as clone:  # what Celery's pools hand out
            assert isinstance(clone.transport, redis_transport.Transport)


def test_the_result_backend_is_celerys_own(settings: Settings, redis_client: redis.Redis) -> None:
    backend = create_celery(settings).backend
    assert type(backend) is RedisBackend
    task_id = f"bt-{secrets.token_hex(4)}"
    backend.store_result(task_id, {"ok": 1}, "SUCCESS")
    try:
        assert backend.get_task_meta(task_id)["result"] == {"ok": 1}
    finally:
        redis_client.delete(backend.get_key_for_task(task_id))
