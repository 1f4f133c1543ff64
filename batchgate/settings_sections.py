"""The sections of batchgate's settings: each a small frozen object that one consumer takes.

Every field's environment variable is ``BATCHGATE_`` + the field name in upper case; the
``#:`` comment above a field is its documentation (rendered into docs/settings.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from baseline.drift_thresholds import DriftThresholds
from batchgate.env import SettingsError


def at_least_one(section: object, *names: str) -> None:
    for name in names:
        if getattr(section, name) < 1:
            raise SettingsError(f"BATCHGATE_{name.upper()} must be at least 1")


@dataclass(frozen=True)
class BrokerSettings:
    """The queue contract both sides share: Redis, key names' prefix, the queue, task lifetimes and recovery."""

    #: Redis for the broker, task records and notifications. A password in it
    #: (``redis://:password@host…``, or an ACL user) is also required by ``make run``'s own Redis.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key batchgate writes (several stacks can share a Redis).
    key_prefix: str = "bg"
    #: Celery queue the API publishes inference requests to.
    queue: str = "batchgate"
    #: How long a task record (request, status, result) lives after submission.
    task_ttl_s: int = 86400
    #: A message taken by a worker that died is redelivered after this long; must cover the
    #: longest batch (window + Gemini timeout and backoff per attempt + session order wait).
    visibility_timeout_s: int = 600
    #: A task unfinished this long after submission (or its last recovery), whose message no
    #: live worker holds and which cannot be waiting in the queue, is re-enqueued by the orphan
    #: sweeper (a message lost between the API and a worker); must exceed the lease by over 5 s.
    orphan_after_s: int = 30
    #: A worker process silent this long is dead: its leased messages (buffered or running) go
    #: back on the queue at once, and its running tasks may be claimed by another worker. Its
    #: heartbeat beats every 2 s.
    worker_lease_s: float = 10.0
    #: Re-enqueues of one task before the sweeper fails it (``lost_in_transit``).
    orphan_max_recoveries: int = 3
    #: How often beat runs the orphan sweeper.
    orphan_sweep_interval_s: float = 5.0
    #: A worker counts as consuming while its heartbeat is younger than this.
    worker_heartbeat_ttl_s: float = 15.0
    #: How long each tenant's usage counts of a day and of a month are kept (0: usage is not
    #: counted, and budgets cannot be enforced).
    usage_retention_days: int = 400

    @property
    def usage_retention_s(self) -> int:
        return max(0, self.usage_retention_days) * 86400

    def validate(self) -> None:
        if not 4.0 <= self.worker_lease_s < self.visibility_timeout_s:
            raise SettingsError(
                "BATCHGATE_WORKER_LEASE_S must be at least 4 (two heartbeats) and below the visibility timeout"
            )
        if self.orphan_after_s <= self.worker_lease_s + 5:
            raise SettingsError(
                "BATCHGATE_ORPHAN_AFTER_S must exceed BATCHGATE_WORKER_LEASE_S by more than 5 s "
                "(a dead worker's messages come back through its lease first)"
            )

    @property
    def inflight_stale_after_s(self) -> float:
        """A tenant's in-flight entry older than this is dropped (a submission that died
        between admission and its record): an hour, or longer than the orphan sweeper can take
        to fail a lost task, so no live task's slot is dropped (a queue backlog drains well
        within it: backpressure bounds it)."""
        return float(max(3600, self.orphan_after_s * (self.orphan_max_recoveries + 2)))


@dataclass(frozen=True)
class PackingSettings:
    """How the engine packs a batch into model calls and retries them."""

    #: auto (pack while output budgets fit, else fan out), pack or concurrent.
    strategy: str = "auto"
    #: Most items packed into one generateContent call.
    max_items_per_call: int = 32
    #: Most (estimated) input tokens in one packed call.
    max_input_tokens_per_call: int = 32000
    #: Output-token limit of one call; packed items' budgets must fit in it.
    max_output_tokens_per_call: int = 8192
    #: Output budget of an item whose request sets no max_output_tokens.
    default_max_output_tokens: int = 256
    #: Attempts per call for 429/5xx/timeouts before its items fail.
    retry_attempts: int = 5
    #: First backoff delay; doubles per attempt, with jitter.
    retry_base_s: float = 0.2
    #: Longest backoff delay (a server's RetryInfo delay is honoured up to this).
    retry_max_s: float = 8.0

    def validate(self) -> None:
        if self.strategy not in ("auto", "pack", "concurrent"):
            raise SettingsError(f"BATCHGATE_STRATEGY must be auto, pack or concurrent, not {self.strategy!r}")
        at_least_one(self, "max_items_per_call", "retry_attempts")


@dataclass(frozen=True)
class ConsumerSettings:
    """How the Celery batch consumer forms batches and runs them."""

    #: adaptive: while fewer than BATCHGATE_ADAPTIVE_SLOTS batches run, a batch leaves once
    #: its requests' summed wait pays for a model call's measured fixed CPU cost at the CPU's
    #: load (at once on an idle machine; full batches on a saturated one; never later than
    #: BATCHGATE_BATCH_WINDOW_MS), else it waits to fill; window: wait
    #: BATCHGATE_BATCH_WINDOW_MS from the batch's first request.
    flush_mode: str = "adaptive"
    #: Adaptive mode: batches the whole cluster runs at least before new requests wait to
    #: fill a batch, shared by the live worker processes (each runs at least its share,
    #: rounded up). Each worker probes above its share while batches wait for a slot and
    #: keeps a step only if its batches did not slow down (``batching.slot_tuner``): a model
    #: with 8 call slots stays near 8, Gemini's quota-bound API gets what the quota needs.
    #: At most BATCHGATE_WORKER_CONCURRENCY per worker.
    adaptive_slots: int = 8
    #: Flush a batch when it holds this many requests.
    batch_max_size: int = 32
    #: Window mode: flush a batch this long after its first request arrived; adaptive mode:
    #: the longest a batch waits while a slot is free.
    batch_window_ms: float = 100.0
    #: Batches processed at once by one worker process (thread pool size): the most batches
    #: in flight the slot tuner may learn for it (a lone worker under a 300 RPM quota at
    #: Gemini-like call times runs about 20).
    worker_concurrency: int = 32

    def validate(self) -> None:
        if self.flush_mode not in ("adaptive", "window"):
            raise SettingsError(f"BATCHGATE_FLUSH_MODE must be adaptive or window, not {self.flush_mode!r}")
        at_least_one(self, "batch_max_size", "worker_concurrency")

    @property
    def prefetch_multiplier(self) -> int:
        """Prefetch per pool slot so that every slot can hold a full batch plus the next."""
        return self.batch_max_size + 1


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API's processes and the size of what it accepts."""

    #: Interface the API replicas bind to.
    api_host: str = "127.0.0.1"
    #: One API replica per port.
    api_ports: tuple[int, ...] = (8001, 8002, 8003)
    #: gunicorn worker processes per replica.
    api_workers: int = 1
    #: Concurrent connections per gunicorn (gevent) worker.
    api_worker_connections: int = 1000
    #: Redis connections per API process; requests beyond it wait for a free one.
    api_redis_pool_size: int = 64
    #: Largest request body accepted (413 beyond).
    max_body_bytes: int = 1_048_576
    #: Longest prompt accepted, in characters (422 beyond).
    max_prompt_chars: int = 200_000
    #: Longest context accepted, in characters of its JSON (422 beyond); the body limit
    #: (BATCHGATE_MAX_BODY_BYTES) still applies.
    max_context_chars: int = 900_000
    #: Longest long-poll (``?wait=``, ``POST /api/v1/task``).
    max_wait_s: float = 30.0
    #: Default wait of ``POST /api/v1/task`` when the client gives none.
    default_sync_wait_s: float = 30.0

    def validate(self) -> None:
        if not self.api_ports:
            raise SettingsError("BATCHGATE_API_PORTS must name at least one port")


@dataclass(frozen=True)
class EdgeSettings:
    """Edge policy: API keys, rate and in-flight limits, backpressure, cache, idempotency."""

    #: Require an ``X-API-Key`` (off: anonymous, rate-limited per client IP).
    auth_enabled: bool = True
    #: A key that exists with the premium tier from start-up (``make run`` makes one if empty).
    demo_api_key: str = field(default="", repr=False)
    #: Free tier: sustained submissions per second (token bucket refill rate).
    tier_free_rate: float = 1.0
    #: Free tier: burst (token bucket size).
    tier_free_burst: int = 10
    #: Basic tier: submissions per second.
    tier_basic_rate: float = 10.0
    #: Basic tier: burst.
    tier_basic_burst: int = 50
    #: Premium tier: submissions per second.
    tier_premium_rate: float = 100.0
    #: Premium tier: burst.
    tier_premium_burst: int = 200
    #: Free tier: a tenant's tasks queued or running at once (429 ``too_many_in_flight`` beyond),
    #: by the tier of the key that submits.
    tier_free_max_in_flight: int = 20
    #: Basic tier: a tenant's tasks queued or running at once.
    tier_basic_max_in_flight: int = 200
    #: Premium tier: a tenant's tasks queued or running at once.
    tier_premium_max_in_flight: int = 2000
    #: Auth off: tasks queued or running at once per client IP.
    anonymous_max_in_flight: int = 200
    #: Auth off: submissions per second per client IP.
    anonymous_rate: float = 10.0
    #: Auth off: burst per client IP.
    anonymous_burst: int = 50
    #: Live metrics streams (``/api/v1/metrics/stream``) one API key may hold open at once.
    metrics_streams_per_key: int = 4
    #: A live metrics stream closes after this long (the browser's EventSource reconnects).
    metrics_stream_max_s: float = 3600.0
    #: Tenants named in /metrics' per-tenant series (this month's usage, by cost); the others
    #: are summed as "other" (0: no per-tenant series).
    prometheus_top_tenants: int = 10
    #: Refuse new work (503) once this many requests wait in the queue.
    queue_high_water: int = 5000
    #: Once refusing, admit again when the queue has drained to this many.
    queue_low_water: int = 4000
    #: Retry-After (seconds) sent with a backpressure 503.
    backpressure_retry_after_s: int = 2
    #: Serve identical requests from the response cache.
    cache_enabled: bool = True
    #: How long a cached answer is served.
    cache_ttl_s: int = 3600
    #: Comma-separated words that mark a prompt as time-sensitive: never cached.
    cache_bypass_words: str = "now,current,currently,today,tonight,latest,recent,recently,yesterday,tomorrow"
    #: How long an Idempotency-Key is remembered.
    idempotency_ttl_s: int = 86400
    #: A drop-in request (Gemini or OpenAI) identical to one of the same key still in flight
    #: joins it instead of making another task (an SDK retrying a timeout), for this long after
    #: the first was sent (0 = off). Send distinct bodies (e.g. a seed) or Idempotency-Keys for
    #: separate samples of one prompt.
    dropin_collapse_s: int = 120

    def validate(self) -> None:
        if self.queue_low_water > self.queue_high_water:
            raise SettingsError("BATCHGATE_QUEUE_LOW_WATER must not exceed BATCHGATE_QUEUE_HIGH_WATER")
        at_least_one(
            self,
            "tier_free_max_in_flight",
            "tier_basic_max_in_flight",
            "tier_premium_max_in_flight",
            "anonymous_max_in_flight",
            "metrics_streams_per_key",
        )
        if not self.metrics_stream_max_s > 0:
            raise SettingsError("BATCHGATE_METRICS_STREAM_MAX_S must be positive")

    def tier_limits(self) -> dict[str, tuple[float, int]]:
        """Rate (per second) and burst of each API-key tier."""
        return {
            "free": (self.tier_free_rate, self.tier_free_burst),
            "basic": (self.tier_basic_rate, self.tier_basic_burst),
            "premium": (self.tier_premium_rate, self.tier_premium_burst),
        }

    def tier_max_in_flight(self) -> dict[str, int]:
        """A tenant's tasks in flight at once, by the tier of the submitting key."""
        return {
            "free": self.tier_free_max_in_flight,
            "basic": self.tier_basic_max_in_flight,
            "premium": self.tier_premium_max_in_flight,
        }

    @property
    def bypass_words(self) -> tuple[str, ...]:
        """The time-sensitive words, lower-cased."""
        return tuple(w.strip().lower() for w in self.cache_bypass_words.split(",") if w.strip())


@dataclass(frozen=True)
class ConversationSettings:
    """Conversations (sessions) and the user-preferences database."""

    #: A conversation's history expires this long after its last use.
    session_ttl_s: int = 3600
    #: Prior turns sent with a session's task, in estimated tokens (oldest dropped first).
    session_history_tokens: int = 8000
    #: Turns kept per session in Redis (a user turn and an answer are two).
    session_max_turns: int = 200
    #: How long a session's task waits for its predecessor (on another worker) to land.
    session_order_wait_s: float = 30.0
    #: Preferences database (SQLAlchemy URL); empty = ``DATABASE_URL``, else SQLite in the run folder.
    database_url: str = ""
    #: Connections each process keeps to the preferences database.
    database_pool_size: int = 5


@dataclass(frozen=True)
class DriftSettings:
    """PerformanceBaseline captures and the LatencyDriftSignal."""

    #: Live window compared with the baseline on every metrics run (whole 10 s slots).
    drift_window_s: int = 60
    #: Requests a stage needs in the live window (and the baseline) to be judged.
    drift_min_samples: int = 200
    #: Significance level of the binned two-sample Kolmogorov-Smirnov test.
    drift_ks_alpha: float = 0.001
    #: Live p95 / baseline p95 from which a stage whose distribution differs is ``warn``.
    drift_warn_ratio: float = 1.10
    #: Live p95 / baseline p95 from which a stage whose distribution differs is ``drift``.
    drift_ratio: float = 1.20
    #: Consecutive drifted evaluations before the signal says ``drift``.
    drift_enter_after: int = 2
    #: Consecutive ok evaluations before a drifted signal says ``ok`` again.
    drift_exit_after: int = 2
    #: Folder of baseline captures and their ``latest.json`` pointer (make baseline).
    baseline_dir: str = "baseline/snapshots"

    def validate(self) -> None:
        if self.drift_window_s < 10 or self.drift_window_s % 10:
            raise SettingsError("BATCHGATE_DRIFT_WINDOW_S must be a multiple of 10 (the metrics slot)")
        if not 1.0 <= self.drift_warn_ratio <= self.drift_ratio:
            raise SettingsError("need 1 <= BATCHGATE_DRIFT_WARN_RATIO <= BATCHGATE_DRIFT_RATIO")
        if not 0.0 < self.drift_ks_alpha < 1.0:
            raise SettingsError("BATCHGATE_DRIFT_KS_ALPHA must be between 0 and 1")
        at_least_one(self, "drift_min_samples", "drift_enter_after", "drift_exit_after")

    def thresholds(self) -> DriftThresholds:
        """The drift signal's thresholds, as ``baseline`` takes them."""
        return DriftThresholds(
            min_samples=self.drift_min_samples,
            ks_alpha=self.drift_ks_alpha,
            warn_ratio=self.drift_warn_ratio,
            drift_ratio=self.drift_ratio,
            enter_after=self.drift_enter_after,
            exit_after=self.drift_exit_after,
        )


@dataclass(frozen=True)
class StackSettings:
    """The local stack ``make run`` starts: nginx, Flower, its own Redis, the run folder."""

    #: nginx listens here (HTTP).
    nginx_port: int = 8080
    #: nginx also serves HTTPS (TLS 1.2/1.3, HTTP/2) here (0 = no HTTPS); ``make run`` makes a
    #: self-signed certificate in the run folder, compose mounts ./certs.
    nginx_tls_port: int = 8443
    #: nginx's coarse per-client-IP shield: requests per second (burst the same) before its own
    #: 429; far above the API's per-key limits, so load tests from one address pass (0 = off).
    nginx_rate_per_s: int = 5000
    #: Container nginx (compose, Kubernetes): the DNS server it asks for the API's address at run
    #: time, so replicas that come and go are found (Docker's own); empty: resolve once (a
    #: Kubernetes Service's address is stable).
    nginx_resolver: str = "127.0.0.11"
    #: Flower listens here (loopback only).
    flower_port: int = 5555
    #: Flower basic auth ``user:password``; empty = generated and printed by ``make run``.
    flower_auth: str = ""
    #: ``make run``'s own Redis (started when none answers at redis_url) keeps an append-only
    #: file in the run folder, so a restart loses nothing (``make chaos`` turns it on).
    redis_appendonly: bool = False
    #: Batch worker processes ``make run`` starts (``worker``, ``worker-2``, …; Celery nodes
    #: ``batch@``, ``batch2@``, …), to scale out on one machine.
    worker_processes: int = 1
    #: Folder for generated configs, logs, sockets and pid files.
    run_dir: str = ".run"
    #: Start the embedded simulator (``auto``: when no real Gemini is configured).
    start_simulator: str = "auto"

    def validate(self) -> None:
        if self.nginx_tls_port and self.nginx_tls_port == self.nginx_port:
            raise SettingsError("BATCHGATE_NGINX_TLS_PORT must differ from BATCHGATE_NGINX_PORT (or be 0)")
        at_least_one(self, "worker_processes")
        if self.nginx_tls_port < 0 or self.nginx_rate_per_s < 0:
            raise SettingsError(
                "BATCHGATE_NGINX_TLS_PORT and BATCHGATE_NGINX_RATE_PER_S must not be negative"
            )
