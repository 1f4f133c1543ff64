"""HTTP request counts gather in process and reach the shared Redis hash without loss."""

from __future__ import annotations

import atexit

import redis

from api.request_counter import RequestCounter
from tests.harness import free_port, wait_until

KEY = "test:http-counts"


def test_two_processes_counts_add_up_in_redis(redis_client: redis.Redis) -> None:
    redis_client.delete(KEY)
    first, second = RequestCounter(redis_client, KEY), RequestCounter(redis_client, KEY)
    for _ in range(5):
        first.count("POST /api/v1/tasks 202")
    second.count("POST /api/v1/tasks 202")
    second.count("GET /health 200")
    assert redis_client.hgetall(KEY) == {}  # nothing written per request
    first.flush()
    second.flush()
    assert redis_client.hgetall(KEY) == {"POST /api/v1/tasks 202": "6", "GET /health 200": "1"}
    first.flush()  # nothing pending: nothing added
    assert redis_client.hget(KEY, "POST /api/v1/tasks 202") == "6"


def test_the_background_flusher_writes_within_its_interval(redis_client: redis.Redis) -> None:
    redis_client.delete(KEY)
    counter = RequestCounter(redis_client, KEY, interval_s=0.05)
    try:
        counter.count("GET /metrics 200")
        wait_until(lambda: redis_client.hget(KEY, "GET /metrics 200") == "1", 5, "the flushed count")
    finally:
        counter.close()


def test_a_failed_flush_keeps_its_counts_for_the_next() -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2, decode_responses=True)
    counter = RequestCounter(unreachable, KEY)
    counter.count("POST /api/v1/tasks 202")
    try:
        counter.flush()
    except redis.RedisError:
        pass
    else:
        raise AssertionError("flushing to a closed port must fail")
    assert counter._pending == {"POST /api/v1/tasks 202": 1}
    atexit.unregister(counter.close)  # its Redis never existed: no last flush at exit
