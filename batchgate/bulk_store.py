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


class BulkStore:
    """Bulk-lane task ids waiting in Redis, and their records' view of their Gemini job."""

    def __init__(self, client: redis.Redis, prefix: str, store: TaskStore) -> None:
        self._redis = client
        self._pending = key_names.bulk_pending(prefix)
        self._store = store
        self._note = client.register_script(_NOTE)

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
