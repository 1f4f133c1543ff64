"""The benchmark's load generator: bounded asyncio HTTP clients that submit and long-poll.

Each client does what a real agent client does: ``POST /api/v1/tasks``, then
``GET /api/v1/tasks/<id>?wait=…`` until the task is finished, then the next request.
Refusals (429, 503) and gateway errors (502, 504) are counted and retried after a short
pause; they never end a client. Clients may send different API keys over one session (one
connection pool), so a load can be spread over tenants without changing anything else.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

#: Long-poll length asked for (the API caps it at ``BATCHGATE_MAX_WAIT_S``).
POLL_WAIT_S = 30
#: Statuses a careful client retries.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_PAUSE_S = 0.1
TERMINAL = frozenset({"succeeded", "failed"})

#: Agent-style prompts of varied length (50-150 characters); ``{n}`` makes each one unique.
TEMPLATES = (
    "Classify the intent of support ticket {n}: 'My invoice shows a double charge for March.'",
    "Summarise step {n} of the deployment log in one sentence.",
    "Extract the due date and the owner from note {n}: 'Ana will send the Q3 report by Friday the 14th.'",
    "Plan {n}: name the next tool call needed to book a meeting room for six people on Thursday afternoon.",
    "Turn request {n} into a SQL WHERE clause: customers in Lisbon who ordered more than three times in 2024.",
    "Rate review {n} from 1 to 5: 'Setup took ten minutes and support was patient, but the fan is loud.'",
    "Rewrite commit message {n} in the imperative mood: 'fixed the bug where retries were counted twice'.",
    "Yes or no, then one reason: is ticket {n} a duplicate of the printer jam report on floor 3?",
)


def prompt_for(tag: str, n: int) -> str:
    """The ``n``-th benchmark prompt; ``tag`` keeps runs apart (no two prompts are equal)."""
    return TEMPLATES[n % len(TEMPLATES)].format(n=f"{tag}-{n}")


def prompts(tag: str) -> Iterator[str]:
    """An endless supply of distinct prompts."""
    return (prompt_for(tag, n) for n in itertools.count())


@dataclass(frozen=True)
class Completion:
    """One answered request as the client saw it (monotonic clock), with the task's timings."""

    started: float
    finished: float
    status: str
    timings: Mapping[str, Any]
    usage: Mapping[str, Any] | None

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.started) * 1000


@dataclass
class LoadRun:
    """Everything a load phase saw."""

    completions: list[Completion] = field(default_factory=list)
    #: ``submit 503``, ``poll ClientOSError``, … → count.
    errors: Counter[str] = field(default_factory=Counter)
    submitted: int = 0
    #: HTTP requests sent (submissions and polls, retries included), with their send times.
    http_sent: list[float] = field(default_factory=list)

    def finished_between(self, start: float, end: float) -> list[Completion]:
        return [c for c in self.completions if start <= c.finished < end]


class Client:
    """Submit-and-long-poll over one shared aiohttp session (its pool bounds the connections).

    ``api_key`` (if given) is sent instead of the session's own ``X-API-Key``. ``sync``: one
    HTTP request per task (``POST /api/v1/task?wait=…``, submit and wait in one), as an agent
    calling a chat endpoint does; a task still running when that wait ends is long-polled.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        run: LoadRun,
        api_key: str | None = None,
        sync: bool = False,
    ) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.run = run
        self.headers = {"X-API-Key": api_key} if api_key else None
        self.sync = sync

    def with_key(self, api_key: str) -> Client:
        """The same client (session, run, shape) sending ``api_key``."""
        return Client(self.session, self.base, self.run, api_key, self.sync)

    async def submit(self, prompt: str) -> dict[str, Any] | None:
        """Enqueue one prompt (bypassing the response cache); the task as the API returned it
        (finished already in ``sync`` shape, if it was in time), or None if refused for good."""
        body = {"prompt": prompt, "cache": False}
        url = f"{self.base}/api/v1/task?wait={POLL_WAIT_S}" if self.sync else f"{self.base}/api/v1/tasks"
        while True:
            self.run.http_sent.append(time.monotonic())
            try:
                async with self.session.post(url, json=body, headers=self.headers) as response:
                    if response.status in (200, 202):
                        self.run.submitted += 1
                        task: dict[str, Any] = await response.json()
                        return task
                    self.run.errors[f"submit {response.status}"] += 1
                    await response.read()
                    if response.status not in RETRY_STATUSES:
                        return None
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.run.errors[f"submit {type(exc).__name__}"] += 1
            await asyncio.sleep(RETRY_PAUSE_S)

    async def wait(self, task_id: str) -> dict[str, Any] | None:
        """Long-poll until the task is finished; None if the API says it does not exist."""
        url = f"{self.base}/api/v1/tasks/{task_id}?wait={POLL_WAIT_S}"
        while True:
            self.run.http_sent.append(time.monotonic())
            try:
                async with self.session.get(url, headers=self.headers) as response:
                    if response.status == 200:
                        body: dict[str, Any] = await response.json()
                        if body.get("status") in TERMINAL:
                            return body
                        continue
                    self.run.errors[f"poll {response.status}"] += 1
                    await response.read()
                    if response.status not in RETRY_STATUSES:
                        return None
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.run.errors[f"poll {type(exc).__name__}"] += 1
            await asyncio.sleep(RETRY_PAUSE_S)

    async def one(self, prompt: str) -> Completion | None:
        """One request end to end; recorded in the run when it finished."""
        started = time.monotonic()
        submitted = await self.submit(prompt)
        if submitted is None:
            return None
        body = submitted if submitted.get("status") in TERMINAL else await self.wait(str(submitted["id"]))
        if body is None:
            return None
        result = body.get("result") or {}
        completion = Completion(
            started=started,
            finished=time.monotonic(),
            status=str(body.get("status")),
            timings=body.get("timings") or {},
            usage=result.get("usage"),
        )
        self.run.completions.append(completion)
        if completion.status != "succeeded":
            code = (body.get("error") or {}).get("code")
            self.run.errors[f"task {completion.status}" + (f" {code}" if code else "")] += 1
        return completion


def session(api_key: str, connections: int) -> aiohttp.ClientSession:
    """A session for ``connections`` clients at once, never through a proxy from the environment."""
    connector = aiohttp.TCPConnector(limit=connections + 8)
    timeout = aiohttp.ClientTimeout(total=POLL_WAIT_S + 30)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"X-API-Key": api_key}, trust_env=False
    )


async def closed_loop(
    client: Client, clients: int, supply: Iterator[str], api_keys: Sequence[str] = ()
) -> None:
    """``clients`` clients, each sending its next request as soon as the last one is answered.

    With ``api_keys``, client ``i`` sends ``api_keys[i % len(api_keys)]`` (see ``spread``).
    Runs until cancelled; the caller reads ``client.run`` meanwhile.
    """
    senders = [client.with_key(key) for key in spread(api_keys, clients)] if api_keys else [client] * clients

    async def loop(sender: Client) -> None:
        while True:
            if await sender.one(next(supply)) is None:
                await asyncio.sleep(RETRY_PAUSE_S)  # refused for good: do not spin

    await asyncio.gather(*(loop(sender) for sender in senders))


def spread(api_keys: Sequence[str], clients: int) -> list[str]:
    """The key of each of ``clients`` clients: round robin, so each key gets ``clients // len``
    clients or one more."""
    return [api_keys[i % len(api_keys)] for i in range(clients)]


async def sequential(client: Client, count: int, supply: Iterator[str]) -> None:
    """``count`` requests one at a time (the low-load case: nothing else in flight)."""
    for _ in range(count):
        await client.one(next(supply))


async def get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """GET a JSON document (the simulator's control surface)."""
    async with session.get(url) as response:
        response.raise_for_status()
        body: dict[str, Any] = await response.json()
        return body
