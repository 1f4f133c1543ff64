"""Task records in Redis: the one place a request's status and result live.

A record is a hash ``<prefix>:task:<id>`` (status, request, its sizes, owner, tenant,
submitted_at, result, error, timings, the submission's X-Request-ID as request_id) that
expires ``task_ttl_s`` after submission. Workers finish records with a script that writes
only once, so a redelivered message can never replace an answer; the same script drops the
request itself (only its sizes stay: a finished task holds its answer, not up to a
megabyte of context for a day) and takes the task out of its tenant's in-flight set
(``api.admission``). Finished ids are announced on ``<prefix>:done`` (and ids that
started running on ``<prefix>:progress``) so long-polls and event streams wake without
polling Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from batchgate import keys as key_names
from batchgate.broker_message import QueuedMessage
from batchgate.sessions import Landing
from batchgate.taskstore_scripts import CLAIM, CREATE, FINISH, PARK
from batchgate.tenants import inflight_prefix
from batchgate.usage_store import RETENTION_DAYS, outcome_args

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
TERMINAL = frozenset({SUCCEEDED, FAILED})


@dataclass(frozen=True)
class Outcome:
    """A finished request as the worker writes it."""

    task_id: str
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    timings: dict[str, Any]
    #: For a session's task: the turns to land with it.
    landing: Landing | None = None
    #: The model asked for (a failed task's result names none).
    model: str = ""


class TaskStore:
    """Reads and writes task records; shared by the API and the workers."""

    def __init__(
        self, client: redis.Redis, prefix: str, ttl_s: int, usage_retention_s: int = RETENTION_DAYS * 86400
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        #: How long the usage counts a finished task adds to are kept (0: none are counted).
        self._usage_retention_s = usage_retention_s
        self._tenant_inflight = inflight_prefix(prefix)
        self._claim = client.register_script(CLAIM)
        self._create = client.register_script(CREATE)
        self._finish = client.register_script(FINISH)
        self._park = client.register_script(PARK)

    @property
    def done_channel(self) -> str:
        return key_names.done_channel(self._prefix)

    @property
    def progress_channel(self) -> str:
        """Where ids of tasks that started running are announced (space-separated)."""
        return key_names.progress_channel(self._prefix)

    def key(self, task_id: str) -> str:
        return key_names.task(self._prefix, task_id)

    @property
    def inflight_key(self) -> str:
        """Sorted set of unfinished task ids, scored by submission (or last recovery) time:
        what the orphan sweeper scans."""
        return key_names.inflight(self._prefix)

    def create(
        self,
        task_id: str,
        request: dict[str, Any],
        submitted_at: float,
        owner: str | None = None,
        request_id: str | None = None,
        tenant: str = "",
        message: QueuedMessage | None = None,
        inflight_at: float | None = None,
    ) -> bool:
        """Write a new queued record and enter it in the in-flight index; False (nothing
        written, nothing sent) when a record of that id exists. ``request_id``: the
        submission's X-Request-ID. ``message``: the task's broker message, pushed in the same
        script after the record (so a fast worker finds it); without one, the caller
        publishes after this returns. ``inflight_at``: its in-flight time when not its
        submission (a bulk task, overdue only after the bulk lane's deadline)."""
        body = json.dumps(request, separators=(",", ":"))
        fields = {"status": QUEUED, "request": body, **({"request_id": request_id} if request_id else {})}
        return self._write_new(
            task_id,
            fields,
            request,
            len(body),
            submitted_at,
            owner,
            tenant,
            inflight=True,
            message=message,
            inflight_at=inflight_at,
        )

    def create_cached(
        self,
        task_id: str,
        request: dict[str, Any],
        submitted_at: float,
        owner: str | None,
        result: dict[str, Any],
        request_id: str | None = None,
        tenant: str = "",
    ) -> bool:
        """Write a record that is born finished, answered from the response cache (the request
        itself is not kept, only its sizes); it holds no slot of its tenant's tasks in flight
        (one taken under its id by an earlier attempt is given back)."""
        fields = {
            "status": SUCCEEDED,
            "cached": "1",
            "result": _dumps(result),
            "finished_at": repr(submitted_at),
            **({"request_id": request_id} if request_id else {}),
        }
        body_bytes = len(json.dumps(request, separators=(",", ":")))
        return self._write_new(
            task_id, fields, request, body_bytes, submitted_at, owner, tenant, inflight=False
        )

    def _write_new(
        self,
        task_id: str,
        fields: dict[str, str],
        request: dict[str, Any],
        request_bytes: int,
        submitted_at: float,
        owner: str | None,
        tenant: str,
        inflight: bool = False,
        message: QueuedMessage | None = None,
        inflight_at: float | None = None,
    ) -> bool:
        fields = {
            **fields,
            "sizes": _dumps(request_sizes(request, request_bytes)),
            "submitted_at": repr(submitted_at),
            "owner": owner or "",
            "tenant": tenant,
        }
        pairs = [part for name, value in fields.items() for part in (name, value)]
        created = self._create(
            keys=[
                self.key(task_id),
                self.inflight_key,
                self._tenant_inflight + tenant,
                message.list_key if message else self.key(task_id),
            ],
            args=[
                self._ttl_s,
                task_id,
                repr(submitted_at if inflight_at is None else inflight_at),
                "1" if inflight else "0",
                message.payload if message else "",
                *pairs,
            ],
        )
        return bool(created)

    def delete(self, task_id: str, tenant: str = "") -> None:
        """Forget a task that could not be enqueued (its tenant's in-flight slot too)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(self.key(task_id), self.deltas_key(task_id))
        pipe.zrem(self.inflight_key, task_id)
        if tenant:
            pipe.zrem(self._tenant_inflight + tenant, task_id)
        pipe.execute()

    def overdue(self, older_than: float, limit: int = 500) -> list[tuple[str, dict[str, Any] | None, float]]:
        """In-flight tasks entered (or last recovered) before ``older_than``, with their records
        (None where the record is gone) and when they entered, oldest first."""
        entries: list[tuple[Any, float]] = self._redis.zrangebyscore(  # type: ignore[assignment]
            self.inflight_key, "-inf", older_than, start=0, num=limit, withscores=True
        )
        pipe = self._redis.pipeline(transaction=False)
        for task_id, _ in entries:
            pipe.hgetall(self.key(_text(task_id) or ""))
        return [
            (_text(t) or "", self.decode(raw), float(entered))
            for (t, entered), raw in zip(entries, pipe.execute(), strict=True)
        ]

    def entered_at(self, task_id: str) -> float | None:
        """When the task entered (or last re-entered) the in-flight index; None if not in it."""
        score = self._redis.zscore(self.inflight_key, task_id)
        return None if score is None else float(score)

    def note_recovery(self, task_id: str, now: float) -> int:
        """Count a re-enqueue of the task and restart its in-flight clock; the new count."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(self.key(task_id), "recoveries", 1)
        pipe.zadd(self.inflight_key, {task_id: now})
        return int(pipe.execute()[0])

    def park(
        self, parked: list[tuple[str, dict[str, Any]]], holder: str, lead_s: float, now: float
    ) -> list[str]:
        """Put tasks this holder runs back to queued until their ``parked["until"]`` (epoch),
        entering the in-flight index ``lead_s`` before it (the orphan sweeper's delay, so it
        sends them again at ``until``); announce them; return the ids parked."""
        if not parked:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for task_id, why in parked:
            until = float(why["until"])
            self._park(
                keys=[self.key(task_id), self.inflight_key],
                args=[task_id, repr(until - lead_s), _dumps(why), int(until - now) + self._ttl_s, holder],
                client=pipe,
            )
        done = [task_id for (task_id, _), ok in zip(parked, pipe.execute(), strict=True) if ok]
        if done:
            self._redis.publish(self.progress_channel, " ".join(done))
        return done

    def unpark(self, task_id: str, now: float) -> None:
        """A parked task is sent again: it is no longer parked, and its in-flight clock restarts."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hdel(self.key(task_id), "parked")
        pipe.zadd(self.inflight_key, {task_id: now})
        pipe.execute()

    def forget(self, task_ids: list[str]) -> None:
        """Drop ids from the in-flight index (finished or expired records)."""
        if task_ids:
            self._redis.zrem(self.inflight_key, *task_ids)

    def deltas_key(self, task_id: str) -> str:
        """A streamed task's text chunks, as they arrived: JSON ``{"attempt", "text"}``."""
        return key_names.task_deltas(self._prefix, task_id)

    def append_delta(self, task_id: str, attempt: int, text: str) -> None:
        """Record a chunk of a streamed answer and wake the task's event streams."""
        key = self.deltas_key(task_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(key, json.dumps({"attempt": attempt, "text": text}, ensure_ascii=False))
        pipe.expire(key, self._ttl_s)
        pipe.publish(self.progress_channel, task_id)
        pipe.execute()

    def get_with_deltas(
        self, task_id: str, first: int = 0
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The record and its streamed chunks from index ``first`` on, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self.key(task_id))
        pipe.lrange(self.deltas_key(task_id), first, -1)
        raw, deltas = pipe.execute()
        return self.decode(raw), [json.loads(_text(d) or "{}") for d in deltas]

    def get_many(self, task_ids: list[str]) -> list[dict[str, Any] | None]:
        """Several records in one round trip (None for each unknown or expired one)."""
        pipe = self._redis.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hgetall(self.key(task_id))
        return [self.decode(raw) for raw in pipe.execute()]

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The record as a dict with JSON fields decoded, or None if unknown or expired."""
        return self.decode(self._redis.hgetall(self.key(task_id)))

    @staticmethod
    def decode(raw: dict[Any, Any] | None) -> dict[str, Any] | None:
        """A record from its raw hash (``HGETALL`` of ``key``, read in someone's pipeline)."""
        return _decode(raw) if raw else None

    def claim(
        self,
        task_ids: list[str],
        holder: Holder,
        picked_at: float,
        batch_size: int,
        now: float | None = None,
    ) -> set[str]:
        """Claim the tasks this delivery may run (queued ones, or running under a holder that is
        dead or whose lease does not hold them: killed within a lease flush of taking the
        message) and move them to running; announce them on ``progress_channel``. The ids
        claimed."""
        if not task_ids:
            return set()
        live_after = (picked_at if now is None else now) - holder.lapse_s
        claimed = self._claim(
            keys=[self.key(t) for t in task_ids],
            args=[
                repr(picked_at),
                batch_size,
                self.progress_channel,
                holder.name,
                holder.holders_key,
                repr(live_after),
                holder.lease_prefix,
                *task_ids,
            ],
        )
        return {_text(t) or "" for t in claimed}

    def finish(self, outcomes: list[Outcome], finished_at: float) -> list[str]:
        """Write outcomes once each (landing a session's turns with its answer), in one
        pipeline, and announce them; return the ids written."""
        if not outcomes:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for outcome in outcomes:
            keys = [self.key(outcome.task_id), self.inflight_key]
            args: list[Any] = [
                outcome.status,
                _dumps(outcome.result),
                _dumps(outcome.error),
                _dumps(outcome.timings),
                repr(finished_at),
                outcome.task_id,
                self._tenant_inflight,
                # What it adds to its tenant's usage, counted once, with the outcome.
                *outcome_args(
                    self._prefix, outcome, outcome.status == FAILED, finished_at, self._usage_retention_s
                ),
            ]
            landing = outcome.landing
            if landing is not None:
                keys += [landing.meta_key, landing.turns_key]
                args += [landing.seq, landing.ttl_s, landing.max_turns, *landing.turns]
            self._finish(keys=keys, args=args, client=pipe)
        written = [o.task_id for o, ok in zip(outcomes, pipe.execute(), strict=True) if ok]
        if written:
            self._redis.publish(self.done_channel, " ".join(written))
        return written


@dataclass(frozen=True)
class Holder:
    """Who claims tasks: a worker process, and where holders' beats are kept (``workers.leases``)."""

    name: str
    holders_key: str
    #: A holder silent longer than this is dead: its running tasks may be claimed again.
    lapse_s: float
    #: A holder's lease (delivery tag -> task id) is this prefix + its name.
    lease_prefix: str


def request_sizes(request: dict[str, Any], request_bytes: int) -> dict[str, int]:
    """What a record keeps of its request once finished: how big it was."""
    context = request.get("context")
    history = request.get("history")
    return {
        "request_bytes": request_bytes,
        "prompt_chars": len(str(request.get("prompt") or "")),
        "context_chars": len(json.dumps(context, ensure_ascii=False)) if context else 0,
        "history_turns": len(history) if isinstance(history, list) else 0,
    }


def _dumps(value: dict[str, Any] | None) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: dict[Any, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in raw.items():
        name, text = _text(key) or "", _text(value) or ""
        if name in ("request", "result", "error", "timings", "sizes", "parked", "bulk"):
            record[name] = json.loads(text) if text else None
        elif name in ("submitted_at", "picked_at", "finished_at"):
            record[name] = float(text) if text else None
        elif name in ("batch_size", "recoveries"):
            record[name] = int(text) if text else None
        elif name == "cached":
            record[name] = text == "1"
        elif name == "owner":
            record[name] = text or None
        else:
            record[name] = text
    return record
