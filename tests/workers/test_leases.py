"""Leases: a killed worker's tasks run again within seconds, on the default settings.

Real Redis, simulator, two Celery workers and an API, each its own process, with the
default visibility timeout (600 s) and lease (10 s): a worker is SIGKILLed while it holds
buffered and running tasks; the other worker must put them back and answer them long before
the broker's visibility timeout would.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from batchgate.settings import Settings
from batchgate.taskstore import Holder, TaskStore
from batching.simulator.answers import answer_for
from tests.clients import submit_and_collect
from tests.conftest import create_key, stack_env
from tests.harness import Process, http_json, running, start_api, start_simulator, start_worker, wait_until
from workers.leases import LeaseBook, holders_key, lease_key, lease_prefix


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    values = stack_env(redis_url, BATCHGATE_SIM_OVERHEAD_MS="1500")
    for name in ("BATCHGATE_VISIBILITY_TIMEOUT_S", "BATCHGATE_WORKER_LEASE_S", "BATCHGATE_ORPHAN_AFTER_S"):
        assert name not in values  # the defaults are what is tested
    return values


def holder_of(client: redis.Redis, prefix: str, worker: Process) -> str | None:
    """The lease holder name of a worker process (``host:pid:token``)."""
    for name in client.zrange(holders_key(prefix), 0, -1):
        if name.split(":")[1] == str(worker.pid):
            return str(name)
    return None


def test_a_killed_workers_tasks_run_again_within_seconds(
    env: dict[str, str], logs_dir: Path, redis_client: redis.Redis
) -> None:
    settings = Settings.from_env(env)
    assert settings.broker.visibility_timeout_s == 600 and settings.broker.worker_lease_s == 10
    prefix = settings.broker.key_prefix
    key = create_key(env, "premium")
    sim, sim_url = start_simulator(logs_dir, env)
    env["BATCHGATE_SIMULATOR_URL"] = sim_url
    doomed = start_worker(logs_dir, env, name="doomed")
    api, api_url = start_api(logs_dir, env)
    with running(sim, api):
        wait_until(lambda: http_json("GET", f"{api_url}/ready")[0] == 200, 30, "the first worker")
        holder = wait_until(lambda: holder_of(redis_client, prefix, doomed), 10, "the first worker's leases")
        prompts = [{"prompt": f"lease test {i}: what is {i} cubed?"} for i in range(40)]
        runs = []
        client = threading.Thread(target=lambda: runs.append(submit_and_collect(api_url, prompts, key, 120)))
        client.start()
        # Killed while it holds all 40: some running (a 1.5 s model call), the rest buffered.
        wait_until(lambda: redis_client.hlen(lease_key(prefix, holder)) == 40, 30, "all 40 held")
        doomed.send(signal.SIGKILL)
        killed_at = time.monotonic()
        with running(start_worker(logs_dir, env, name="survivor")):
            client.join(120)
            recovered_in = time.monotonic() - killed_at
    doomed.stop()
    [run] = runs
    for body, prompt in zip(run.bodies, run.prompts, strict=True):
        assert body is not None and body["status"] == "succeeded", (prompt, body, run.failures)
        assert body["result"]["text"] == answer_for(prompt)
    # The lapse (10 s), a beat (2 s), a new worker's start and the model: not the 600 s the
    # broker's visibility timeout would take.
    assert recovered_in < 45, recovered_in
    assert redis_client.zscore(holders_key(prefix), holder) is None  # the dead holder is forgotten
    assert not redis_client.exists(lease_key(prefix, holder))


def test_a_task_running_under_a_live_holder_is_not_claimed_again(redis_client: redis.Redis) -> None:
    prefix = f"claims-{time.monotonic_ns()}"
    store = TaskStore(redis_client, prefix, 60)
    leases_a = LeaseBook(redis_client, prefix, "a", lapse_s=10)
    a, b = (Holder(name, holders_key(prefix), 10, lease_prefix(prefix)) for name in ("a", "b"))
    for task_id in ("t1", "t2"):
        store.create(task_id, {"prompt": "p"}, 100.0)
        leases_a.take(f"tag-{task_id}", task_id)
    leases_a.flush()
    leases_a.beat(100.0)
    assert store.claim(["t1", "t2"], a, picked_at=100.0, batch_size=2) == {"t1", "t2"}
    # A second delivery of the same messages, to another worker or to a itself: nothing to run.
    assert store.claim(["t1", "t2"], b, picked_at=105.0, batch_size=2) == set()
    assert store.claim(["t1"], a, picked_at=105.0, batch_size=1) == set()
    # a stops beating: after its lapse, its running tasks may be claimed by b.
    assert store.claim(["t1"], b, picked_at=111.0, batch_size=1) == {"t1"}
    assert redis_client.hget(store.key("t1"), "claimed_by") == "b"
    # Finished or missing records are never claimed.
    redis_client.hset(store.key("t2"), "status", "succeeded")
    assert store.claim(["t2", "missing"], b, picked_at=200.0, batch_size=2) == set()


def test_a_task_its_live_holder_holds_in_no_lease_is_claimed_again(redis_client: redis.Redis) -> None:
    """A worker killed within a lease flush (0.1 s) of taking a message claimed its task but
    never leased it; it still beats for up to the lapse. The message handed back (by the
    unleased restore or the orphan sweeper) must run now, not be dropped as a live worker's
    (which left the task running until the next sweep, 30 s later)."""
    prefix = f"unleased-claim-{time.monotonic_ns()}"
    store = TaskStore(redis_client, prefix, 60)
    leases_a = LeaseBook(redis_client, prefix, "a", lapse_s=10)
    a, b = (Holder(name, holders_key(prefix), 10, lease_prefix(prefix)) for name in ("a", "b"))
    store.create("t1", {"prompt": "p"}, 100.0)
    leases_a.beat(100.0)
    assert store.claim(["t1"], a, picked_at=100.0, batch_size=1) == {"t1"}
    assert store.claim(["t1"], b, picked_at=101.0, batch_size=1) == {"t1"}  # a's beat is fresh
    assert redis_client.hget(store.key("t1"), "claimed_by") == "b"


def test_a_dead_holders_messages_are_handed_back_once(redis_client: redis.Redis) -> None:
    prefix = f"reap-{time.monotonic_ns()}"
    dead = LeaseBook(redis_client, prefix, "dead", lapse_s=10)
    alive, other = (LeaseBook(redis_client, prefix, name, lapse_s=10) for name in ("alive", "other"))
    dead.take("tag-1", "t1")
    dead.take("tag-2", "t2")
    dead.take("tag-3", "t3")
    dead.release(["tag-3"])  # acknowledged before the flush: never written
    dead.flush()
    dead.beat(100.0)
    alive.beat(111.0)
    other.beat(111.0)
    assert redis_client.hgetall(lease_key(prefix, "dead")) == {"tag-1": "t1", "tag-2": "t2"}
    assert alive.lapsed(105.0) == [] and alive.lapsed(111.0) == ["dead"]
    restored: list[str] = []
    assert sorted(alive.reap("dead", restored.append)) == ["t1", "t2"]
    assert sorted(other.reap("dead", restored.append)) == []  # nothing left to hand back twice
    assert sorted(restored) == ["tag-1", "tag-2"]
    assert alive.lapsed(200.0) == ["other"]


def test_messages_taken_by_a_worker_that_died_before_its_lease_was_written_are_found(
    redis_client: redis.Redis,
) -> None:
    """A worker killed within FLUSH_S of taking a message left it in the broker's unacknowledged
    set and in no lease: found once it is a lapse (less a beat) old; a live worker's, another
    queue's and a recent one are not."""
    prefix = f"unleased-{time.monotonic_ns()}"
    index, unacked = f"{prefix}:unacked_index", f"{prefix}:unacked"
    live = LeaseBook(redis_client, prefix, "live", lapse_s=10)
    live.take("held", "t-held")
    live.flush()
    live.beat(100.0)
    for tag, queue, taken_at in (
        ("orphan", "batchgate", 90.0),
        ("held", "batchgate", 90.0),
        ("housekeeping", "batchgate.housekeeping", 90.0),
        ("recent", "batchgate", 99.5),
    ):
        redis_client.zadd(index, {tag: taken_at})
        redis_client.hset(unacked, tag, json.dumps([{"headers": {"id": tag}}, "", queue]))
    assert live.unleased(index, unacked, "batchgate", older_than=92.0, now=100.0) == ["orphan"]
    # The other queue's message is remembered as not ours: not read again.
    redis_client.hdel(unacked, "housekeeping")
    assert live.unleased(index, unacked, "batchgate", older_than=92.0, now=100.0) == ["orphan"]
