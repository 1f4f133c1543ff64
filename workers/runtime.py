"""What a worker process builds once: Redis client, task store and the engine on its loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from baseline.drift import LatencyDriftSignal
from batchgate.bulk_store import BulkStore
from batchgate.cluster_pacer import ClusterPacer
from batchgate.metrics_store import InferenceMetricsCollector
from batchgate.response_cache import ResponseCache
from batchgate.sessions import SessionStore
from batchgate.settings import Settings
from batchgate.taskstore import Holder, TaskStore
from batching.background_loop import BackgroundLoop
from batching.call_costs import CallCostModel, with_call_cpu
from batching.daily_quota import DailyQuotaGate
from batching.engine import BatchInferenceEngine
from batching.genai_client import GenaiModelClient
from batching.packing import PackingLimits
from batching.retry import RetryPolicy
from batching.types import InferenceRequest, InferenceResult
from workers.batch_job import BatchContext
from workers.bulk_lane import BulkLane
from workers.bulk_lane import dispatch as bulk_dispatch
from workers.conversation_rounds import ConversationRounds
from workers.delta_writer import DeltaWriter
from workers.leases import LeaseBook, lease_prefix, new_holder
from workers.metrics_publisher import MetricsPublisher

#: Retries of a Redis command on connection errors (backoff capped at 1 s: about 20 s).
REDIS_RETRIES = 24
#: Longest a batch waits for its streamed chunks to be written before storing its answers.
DELTA_DRAIN_S = 30.0

log = logging.getLogger(__name__)


class WorkerRuntime:
    """Lazily built per process (after any fork), shared by all batch threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._engine: BatchInferenceEngine | None = None
        self._loop: BackgroundLoop | None = None
        #: The SDK client the engine calls through (built with it, on its loop).
        self._genai: GenaiModelClient | None = None
        #: What a batch costs this process's CPU, fixed and per item (measured).
        self.call_costs = CallCostModel()
        #: Per batch thread: CPU seconds its model calls took on the engine's loop.
        self._batch = threading.local()

    @cached_property
    def redis(self) -> redis.Redis:
        """Rides out a Redis restart: commands (and whole pipelines) are retried on connection
        errors for about 20 s, so a batch answered while Redis restarts is still stored. Every
        write a batch makes is safe to repeat (results are written once)."""
        return redis.Redis.from_url(
            self.settings.broker.redis_url,
            decode_responses=True,
            health_check_interval=30,
            # A Redis that stops answering (not only one that refuses) is waited out as well.
            socket_timeout=10,
            socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), REDIS_RETRIES),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )

    @cached_property
    def metrics(self) -> InferenceMetricsCollector:
        return InferenceMetricsCollector(self.redis, self.settings.broker.key_prefix)

    @cached_property
    def metrics_publisher(self) -> MetricsPublisher:
        drift, broker = self.settings.drift, self.settings.broker
        return MetricsPublisher(
            self.redis,
            broker.key_prefix,
            broker.queue,
            self.settings.consumer.batch_max_size,
            drift=LatencyDriftSignal(drift.thresholds()),
            drift_window_s=drift.drift_window_s,
        )

    @cached_property
    def cache(self) -> ResponseCache:
        return ResponseCache(self.redis, self.settings.broker.key_prefix, self.settings.edge.cache_ttl_s)

    @cached_property
    def store(self) -> TaskStore:
        broker = self.settings.broker
        return TaskStore(self.redis, broker.key_prefix, broker.task_ttl_s, broker.usage_retention_s)

    @cached_property
    def leases(self) -> LeaseBook:
        """What this worker process holds; its name is new at every start."""
        s = self.settings.broker
        # Its own client, without the batch client's 20 s of retries: these writes run on the
        # consumer's timer, which must not stall (a lease write that fails is tried again).
        client = redis.Redis.from_url(s.redis_url, decode_responses=True, socket_timeout=5)
        return LeaseBook(client, s.key_prefix, new_holder(), s.worker_lease_s)

    @cached_property
    def holder(self) -> Holder:
        return Holder(
            self.leases.holder,
            self.leases.holders,
            self.leases.lapse_s,
            lease_prefix(self.settings.broker.key_prefix),
        )

    @cached_property
    def batch_context(self) -> BatchContext:
        """Everything a batch is answered with; answers are kept through a Redis outage for
        half the visibility timeout (past it, the broker would deliver the messages again)."""
        return BatchContext(
            store=self.store,
            run_engine=self.run_engine,
            default_model=self.settings.gemini.model,
            holder=self.holder,
            cache=self.cache,
            metrics=self.metrics,
            conversations=self.conversations,
            patience_s=self.settings.broker.visibility_timeout_s / 2,
            park_day_quota=self.settings.gemini.day_quota_action == "park",
            park_lead_s=self.settings.broker.orphan_after_s,
            prices=self.settings.gemini.price_table,
        )

    @cached_property
    def conversations(self) -> ConversationRounds:
        s = self.settings.conversations
        sessions = SessionStore(
            self.redis, self.settings.broker.key_prefix, s.session_ttl_s, s.session_max_turns
        )
        return ConversationRounds(sessions, s.session_history_tokens, s.session_order_wait_s)

    @cached_property
    def deltas(self) -> DeltaWriter:
        """Streamed chunks, written to Redis off the engine's loop."""
        return DeltaWriter(self.store.append_delta)

    def run_engine(self, requests: list[InferenceRequest]) -> list[InferenceResult]:
        """Run a batch on the shared loop; blocks the calling pool thread until it is answered
        and its streamed chunks are written."""
        loop, engine = self._started()
        results, call_cpu_s = loop.run(with_call_cpu(engine.run(requests, on_delta=self.deltas)))
        self._batch.call_cpu_s = getattr(self._batch, "call_cpu_s", 0.0) + call_cpu_s
        if any(r.stream for r in requests) and not self.deltas.drain(DELTA_DRAIN_S):
            log.warning("streamed chunks still unwritten after %.0f s; answering anyway", DELTA_DRAIN_S)
        return results

    def dispatch_bulk(self) -> int:
        """Start answering the bulk tasks waiting (``workers.bulk_lane``) on the engine's loop;
        the number taken."""
        loop, _ = self._started()
        assert self._genai is not None  # built with the engine
        taken, answering = bulk_dispatch(self.bulk_lane, self._genai)
        if answering is not None:
            loop.submit(answering)
        return len(taken)

    @cached_property
    def bulk_lane(self) -> BulkLane:
        gemini = self.settings.gemini
        return BulkLane(
            store=self.store,
            bulk=BulkStore(self.redis, self.settings.broker.key_prefix, self.store),
            holder=self.holder,
            default_model=gemini.model,
            limits=self._packing_limits,
            attempts=gemini.bulk_attempts,
            poll_s=gemini.bulk_poll_s,
            max_tasks=gemini.bulk_max_tasks,
            deadline_s=gemini.bulk_deadline_s,
            inline_max_bytes=gemini.bulk_inline_max_bytes,
            prices=gemini.price_table,
        )

    @contextmanager
    def measuring_batch(self, items: int) -> Iterator[None]:
        """Record in ``call_costs`` the CPU a batch of ``items`` takes: its own thread's and
        its model calls' on the engine's loop (the adaptive flush policy weighs it)."""
        self._batch.call_cpu_s = 0.0
        started = time.thread_time()
        try:
            yield
        finally:
            self.call_costs.record(items, time.thread_time() - started + self._batch.call_cpu_s)

    @property
    def _packing_limits(self) -> PackingLimits:
        packing = self.settings.packing
        return PackingLimits(
            max_items_per_call=packing.max_items_per_call,
            max_input_tokens_per_call=packing.max_input_tokens_per_call,
            max_output_tokens_per_call=packing.max_output_tokens_per_call,
            default_max_output_tokens=packing.default_max_output_tokens,
            default_strategy=packing.strategy,
            share_calls_across_tenants=self.settings.gemini.share_calls_across_tenants,
        )

    def _started(self) -> tuple[BackgroundLoop, BatchInferenceEngine]:
        with self._lock:
            if self._loop is None or self._engine is None:
                self._loop = BackgroundLoop()
                self._engine = self._loop.run(self._build_engine())
            return self._loop, self._engine

    async def _build_engine(self) -> BatchInferenceEngine:
        gemini, packing = self.settings.gemini, self.settings.packing
        pacer = self.call_pacer
        self._genai = GenaiModelClient(gemini.gemini_api_key, gemini.model_base_url, gemini.gemini_timeout_s)
        # A model Gemini refused for the day is not called again until it resets, by this
        # process nor, through the pacer, by any other.
        client = DailyQuotaGate(self._genai, on_pause=pacer.pause)
        limits = self._packing_limits
        retry = RetryPolicy(
            attempts=packing.retry_attempts, base_s=packing.retry_base_s, max_s=packing.retry_max_s
        )
        return BatchInferenceEngine(client, limits, retry, gemini.max_concurrent_calls, pacer=pacer)

    @cached_property
    def call_pacer(self) -> ClusterPacer:
        """The cluster's quotas, shared by every worker process through Redis. Its own
        client, quick to give up: a turn is taken on the engine's loop, and a Redis that does
        not answer makes the worker pace itself instead of stalling its calls."""
        client = redis.Redis.from_url(
            self.settings.broker.redis_url, socket_timeout=1, socket_connect_timeout=1, retry=None
        )
        return ClusterPacer(
            client,
            self.settings.broker.key_prefix,
            self.settings.gemini.quotas,
            largest_call_tokens=self.settings.packing.max_input_tokens_per_call,
        )
