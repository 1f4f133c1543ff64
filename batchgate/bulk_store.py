"""The bulk lane's state in Redis: the task ids waiting for a Gemini batch job, and what each
task's record shows of its job (``bulk``: job name and state)."""

from __future__ import annotations

import json
from typing import Any

import redis

from batchgate import keys as key_names
from batchgate.taskstore import TaskStore

# KEYS: the records; ARGV[1] the ``bulk`` JSON, ARGV[2] seconds the records must live at least
# (a job may take a day), ARGV[3] the progress channel, then the task ids. A record that is
# gone (expired, deleted) is not brought back as a fragment.
_NOTE = """
local noted = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'bulk', ARGV[1])
    if redis.call('TTL', key) < tonumber(ARGV[2]) then redis.call('EXPIRE', key, ARGV[2]) end
    table.insert(noted, ARGV[3 + i])
  end
end
if #noted > 0 then redis.call('PUBLISH', ARGV[3], table.concat(noted, ' ')) end
return #noted
"""


# A dead worker's bulk tasks go back to the front of the line: KEYS[1] its held set, KEYS[2]
# the pending list; ARGV[1] what every record's key starts with, ARGV[2] the holder. Only the
# tasks still running under that holder are put back (queued, their job forgotten).
_REQUEUE = """
local back = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. id
  local state = redis.call('HMGET', key, 'status', 'claimed_by')
  if state[1] == 'running' and state[2] == ARGV[2] then
    redis.call('HSET', key, 'status', 'queued', 'claimed_by', '')
    redis.call('HDEL', key, 'bulk')
    redis.call('RPUSH', KEYS[2], id)
    back = back + 1
  end
end
redis.call('DEL', KEYS[1])
return back
"""


class BulkStore:
    """Bulk-lane task ids waiting in Redis, and their records' view of their Gemini job."""

    def __init__(self, client: redis.Redis, prefix: str, store: TaskStore) -> None:
        self._redis = client
        self._pending = key_names.bulk_pending(prefix)
        self._store = store
        self._note = client.register_script(_NOTE)
        self._requeue = client.register_script(_REQUEUE)
        self._prefix = prefix

    @property
    def pending_key(self) -> str:
        return self._pending

    def take(self, limit: int) -> list[str]:
        """Take up to ``limit`` waiting task ids, oldest first."""
        taken = self._redis.rpop(self._pending, limit)
        return [t.decode() if isinstance(t, bytes) else str(t) for t in taken or []]

    def give_back(self, task_ids: list[str]) -> None:
        """Put ids taken but not dispatched back at the front of the line."""
        if task_ids:
            self._redis.rpush(self._pending, *reversed(task_ids))

    def note(self, task_ids: list[str], bulk: dict[str, Any], live_s: int) -> int:
        """Show these tasks' Gemini job and state; keep their records ``live_s`` at least."""
        if not task_ids:
            return 0
        keys = [self._store.key(t) for t in task_ids]
        body = json.dumps(bulk, separators=(",", ":"))
        return int(self._note(keys=keys, args=[body, live_s, self._store.progress_channel, *task_ids]))

    def hold(self, holder: str, task_ids: list[str], live_s: int) -> None:
        """Record that ``holder`` (a worker process) answers these tasks in a batch job."""
        if task_ids:
            key = key_names.bulk_held(self._prefix, holder)
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(key, *task_ids)
            pipe.expire(key, live_s)
            pipe.execute()

    def release(self, holder: str, task_ids: list[str]) -> None:
        """These tasks are answered (or failed): ``holder`` no longer holds them."""
        if task_ids:
            self._redis.srem(key_names.bulk_held(self._prefix, holder), *task_ids)

    def requeue_holder(self, holder: str) -> int:
        """A worker process died mid-job (its lease lapsed): its bulk tasks go back to the
        front of the line for the next dispatch, instead of waiting for their deadline. The
        number put back."""
        keys = [key_names.bulk_held(self._prefix, holder), self._pending]
        return int(self._requeue(keys=keys, args=[self._store.key(""), holder]))
