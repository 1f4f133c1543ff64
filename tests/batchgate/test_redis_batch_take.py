"""A BRPOP's answer brings more messages of its list in the same turn: in order, recorded as
unacknowledged before any is delivered, never beyond the prefetch limit, and nothing taken is
lost when the consumer goes away (cancelled, raising, or killed) in the middle of a turn."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from batchgate import redis_transport

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Keys:
    """One test's queue and unacked keys (other tests' workers share this Redis)."""

    queue: str
    unacked: str
    index: str

    @property
    def all(self) -> list[str]:
        sep = kombu_redis.Channel.sep
        levels = [f"{self.queue}{sep}{p}" for p in kombu_redis.PRIORITY_STEPS if p]
        return [self.queue, *levels, self.unacked, self.index, f"{self.unacked}_mutex"]


@pytest.fixture
def keys(redis_client: redis.Redis) -> Iterator[Keys]:
    tag = secrets.token_hex(4)
    made = Keys(f"take-{tag}", f"unacked-{tag}", f"unacked-index-{tag}")
    yield made
    redis_client.delete(*made.all, f"_kombu.binding.{made.queue}")


def connect(redis_url: str, keys: Keys, **options: Any) -> Connection:
    return Connection(
        redis_url,
        transport=redis_transport.Transport,
        transport_options={
            "unacked_key": keys.unacked,
            "unacked_index_key": keys.index,
            "unacked_mutex_key": f"{keys.unacked}_mutex",
            **options,
        },
    )


def queue_of(name: str) -> Queue:
    return Queue(name, Exchange(name, "direct"), routing_key=name)


def publish(redis_url: str, keys: Keys, numbers: range, queue: str | None = None, **kwargs: Any) -> None:
    target = queue_of(queue or keys.queue)
    with connect(redis_url, keys) as conn, conn.Producer() as producer:
        target(producer.channel).declare()
        for n in numbers:
            producer.publish({"n": n}, exchange=target.exchange, routing_key=target.routing_key, **kwargs)


def turn(conn: Connection, received: list[Any]) -> int:
    """One consumer turn (kombu's ``drain_events`` reads one BRPOP answer): how many it brought."""
    before = len(received)
    conn.drain_events(timeout=5)
    return len(received) - before


@pytest.mark.parametrize("ack", ["all", "oldest"])
def test_in_order_recorded_before_delivery_and_within_the_prefetch_limit(
    redis_url: str, redis_client: redis.Redis, keys: Keys, ack: str
) -> None:
    n, prefetch = 60, 3
    publish(redis_url, keys, range(n))
    received: list[int] = []
    outstanding: list[Any] = []
    acked = 0

    def on_message(body: dict[str, int], message: Any) -> None:
        # Everything taken from the list so far is recorded, this message and the rest of
        # its turn included, and no more was taken than the prefetch limit allows.
        taken = n - redis_client.llen(keys.queue) - acked
        assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == taken
        assert redis_client.hexists(keys.unacked, message.delivery_tag)
        assert taken <= prefetch
        outstanding.append(message)
        assert len(outstanding) <= prefetch
        received.append(body["n"])

    turns: list[int] = []
    with (
        connect(redis_url, keys) as conn,
        conn.Consumer(queue_of(keys.queue), callbacks=[on_message]) as consumer,
    ):
        consumer.qos(prefetch_count=prefetch)
        while len(received) < n:
            turns.append(turn(conn, received))
            settle = outstanding[:] if ack == "all" else outstanding[:1]
            for message in settle:
                message.ack()
                outstanding.remove(message)
            acked += len(settle)
        for message in outstanding:
            message.ack()
    assert received == list(range(n))
    # All acknowledged after each turn: every turn takes the limit. One acknowledged per turn:
    # the first takes three, then one a turn.
    assert turns == ([prefetch] * (n // prefetch) if ack == "all" else [prefetch] + [1] * (n - prefetch))
    assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == 0


def test_without_a_prefetch_limit_a_turn_takes_up_to_max_extra_more_and_qos_writes_nothing(
    redis_url: str, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    kombus_writes: list[str] = []
    original = kombu_redis.QoS.append

    def counting(qos: Any, message: Any, delivery_tag: str) -> None:
        kombus_writes.append(delivery_tag)
        original(qos, message, delivery_tag)

    monkeypatch.setattr(kombu_redis.QoS, "append", counting)
    n = 100
    publish(redis_url, keys, range(n))
    received: list[Any] = []
    with (
        connect(redis_url, keys) as conn,
        conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: received.append(m)]),
    ):
        turns = [turn(conn, received) for _ in range(4)]
        records = redis_client.hgetall(keys.unacked)
        for message in received:
            message.ack()
    size = redis_transport.MAX_EXTRA + 1
    assert turns == [size, size, size, n - 3 * size]
    assert [m.payload["n"] for m in received] == list(range(n))
    assert kombus_writes == []  # every message was recorded by the take
    # What kombu's restore and our lease sweeper read: [payload, exchange, routing key].
    assert len(records) == n
    for message in received:
        payload, exchange, routing_key = json.loads(records[message.delivery_tag])
        assert payload == message._raw and (exchange, routing_key) == (keys.queue, keys.queue)
    assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == 0


def test_a_turn_takes_only_from_the_priority_list_that_answered(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    publish(redis_url, keys, range(0, 20, 2), priority=0)
    publish(redis_url, keys, range(1, 20, 2), priority=9)
    received: list[Any] = []
    with (
        connect(redis_url, keys) as conn,
        conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: received.append(m)]),
    ):
        turns = [turn(conn, received), turn(conn, received)]
        for message in received:
            message.ack()
    assert turns == [10, 10]
    assert [m.payload["n"] for m in received] == [*range(0, 20, 2), *range(1, 20, 2)]


def test_two_queues_take_turns(redis_url: str, redis_client: redis.Redis, keys: Keys) -> None:
    """The worker consumes the batch queue and the housekeeping queue on one channel: a busy
    batch queue delays a housekeeping message by at most one turn."""
    other = f"{keys.queue}.housekeeping"
    publish(redis_url, keys, range(100))
    publish(redis_url, keys, range(1000, 1003), queue=other)
    received: list[Any] = []
    queues = [queue_of(keys.queue), queue_of(other)]
    try:
        with (
            connect(redis_url, keys) as conn,
            conn.Consumer(queues, callbacks=[lambda b, m: received.append(m)]),
        ):
            turn(conn, received)
            turn(conn, received)
            for message in received:
                message.ack()
    finally:
        redis_client.delete(other, f"_kombu.binding.{other}")
    numbers = [m.payload["n"] for m in received]
    assert [x for x in numbers if x >= 1000] == [1000, 1001, 1002]
    assert [x for x in numbers if x < 1000] == list(range(redis_transport.MAX_EXTRA + 1))


def test_no_ack_consumers_leave_nothing_recorded(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    publish(redis_url, keys, range(5))
    received: list[int] = []
    with (
        connect(redis_url, keys) as conn,
        conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: received.append(b["n"])], no_ack=True),
    ):
        turns = [turn(conn, received) for _ in range(5)]
    assert received == list(range(5)) and turns == [1] * 5
    assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == 0


def test_a_consumer_cancelled_mid_turn_gets_no_more_and_the_rest_go_back_in_order(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    publish(redis_url, keys, range(10))
    received: list[Any] = []
    with connect(redis_url, keys) as conn:
        with conn.Consumer(queue_of(keys.queue)) as consumer:

            def on_message(body: dict[str, int], message: Any) -> None:
                received.append(message)
                if len(received) == 3:
                    consumer.cancel()

            consumer.register_callback(on_message)
            assert turn(conn, received) == 3
            assert redis_client.llen(keys.queue) == 7 and redis_client.hlen(keys.unacked) == 3
        with conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: received.append(m)]):
            assert turn(conn, received) == 7
        for message in received:
            message.ack()
    assert [m.payload["n"] for m in received] == list(range(10))
    assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == 0


def test_a_callback_that_raises_leaves_its_message_unacked_and_gives_back_the_rest(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    publish(redis_url, keys, range(10))
    received: list[Any] = []

    def on_message(body: dict[str, int], message: Any) -> None:
        received.append(message)
        if len(received) == 3:
            raise RuntimeError("boom")

    with connect(redis_url, keys) as conn:
        with conn.Consumer(queue_of(keys.queue), callbacks=[on_message]), pytest.raises(RuntimeError):
            turn(conn, received)
        # The three delivered are kombu's (acknowledged or restored as any); the rest are back.
        assert set(redis_client.hkeys(keys.unacked)) == {m.delivery_tag for m in received}
        assert redis_client.llen(keys.queue) == 7
        for message in received:
            message.ack()
        rest: list[Any] = []
        with conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: rest.append(m)]):
            turn(conn, rest)
            for message in rest:
                message.ack()
    assert [m.payload["n"] for m in received + rest] == list(range(10))


def test_an_unreadable_message_stops_the_take_and_stays_first(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    publish(redis_url, keys, range(2))
    redis_client.lpush(keys.queue, "not json")
    publish(redis_url, keys, range(2, 4))
    received: list[Any] = []
    with (
        connect(redis_url, keys) as conn,
        conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: received.append(m)]),
    ):
        assert turn(conn, received) == 2
        for message in received:
            message.ack()
    assert [m.payload["n"] for m in received] == [0, 1]
    assert redis_client.lindex(keys.queue, -1) == "not json" and redis_client.llen(keys.queue) == 3


def test_when_the_take_fails_the_message_goes_kombus_way(
    redis_url: str, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: Any) -> Any:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(redis_transport, "_take", failing)
    publish(redis_url, keys, range(3))
    received: list[Any] = []
    with (
        connect(redis_url, keys) as conn,
        conn.Consumer(queue_of(keys.queue), callbacks=[lambda b, m: received.append(m)]),
    ):
        assert turn(conn, received) == 1
        assert redis_client.hkeys(keys.unacked) == [received[0].delivery_tag]
        received[0].ack()
    assert redis_client.llen(keys.queue) == 2


CONSUME_AND_HANG = """
import sys, time
import redis
from kombu import Connection, Exchange, Queue
from batchgate import redis_transport

url, name, unacked, index, flag = sys.argv[1:]
client = redis.Redis.from_url(url)
seen = []

def on_message(body, message):
    seen.append(body)
    if len(seen) == 5:
        client.set(flag, 1)
        time.sleep(60)

options = {"unacked_key": unacked, "unacked_index_key": index, "unacked_mutex_key": unacked + "_mutex"}
with Connection(url, transport=redis_transport.Transport, transport_options=options) as conn:
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    with conn.Consumer(queue, callbacks=[on_message]):
        conn.drain_events(timeout=30)
"""


def test_a_consumer_killed_mid_turn_leaves_every_message_taken_restorable(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    n = 50
    publish(redis_url, keys, range(n))
    flag = f"{keys.queue}-hanging"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CONSUME_AND_HANG, redis_url, keys.queue, keys.unacked, keys.index, flag],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not redis_client.get(flag):
            assert child.poll() is None and time.monotonic() < deadline, "the consumer did not start"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)  # five delivered, the rest of its turn not yet
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
        redis_client.delete(flag)
    size = redis_transport.MAX_EXTRA + 1
    assert redis_client.llen(keys.queue) == n - size
    assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == size
    # kombu's own restore gives every one back (a visibility timeout of 0: all are overdue).
    with connect(redis_url, keys, visibility_timeout=0) as conn:
        conn.default_channel.qos.restore_visible(num=None, interval=1)
        received: list[int] = []

        def on_message(body: dict[str, int], message: Any) -> None:
            received.append(body["n"])
            message.ack()

        with conn.Consumer(queue_of(keys.queue), callbacks=[on_message]):
            while len(received) < n:
                assert turn(conn, received) > 0
    assert sorted(received) == list(range(n))
    assert redis_client.hlen(keys.unacked) == redis_client.zcard(keys.index) == 0
