"""What the views need, built once per process by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from api.admission import Admission
from api.database import Database, create_database_engine
from api.done_notifier import DoneNotifier
from api.idempotency import IdempotencyStore
from api.metrics_feed import MetricsFeed
from api.preferences import PreferenceStore
from api.prometheus import http_counter_key
from api.request_counter import RequestCounter
from batchgate.apikeys import ApiKeyStore
from batchgate.baseline_store import BaselineStore
from batchgate.broker import Publisher, broker_app
from batchgate.budgets import BudgetBook
from batchgate.keys import metrics_channel, metrics_latest_key
from batchgate.metrics_store import InferenceMetricsCollector
from batchgate.response_cache import ResponseCache
from batchgate.sessions import SessionStore
from batchgate.settings import Settings
from batchgate.taskstore import TaskStore
from batchgate.usage_store import UsageStore


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: TaskStore
    publisher: Publisher
    notifier: DoneNotifier
    apikeys: ApiKeyStore
    admission: Admission
    cache: ResponseCache
    idempotency: IdempotencyStore
    metrics: InferenceMetricsCollector
    metrics_feed: MetricsFeed
    http_requests: RequestCounter
    baselines: BaselineStore
    sessions: SessionStore
    #: The preferences database (engine built here; connected and migrated on first use).
    database: Database
    preferences: PreferenceStore
    usage: UsageStore
    budgets: BudgetBook

    @classmethod
    def build(cls, settings: Settings) -> Services:
        # A blocking pool: under a burst of greenlets, wait for a connection instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            settings.broker.redis_url,
            max_connections=settings.api.api_redis_pool_size,
            timeout=10,
            decode_responses=True,
            health_check_interval=30,
        )
        client = redis.Redis(connection_pool=pool)
        database = Database(create_database_engine(settings))
        store = TaskStore(
            client, settings.broker.key_prefix, settings.broker.task_ttl_s, settings.broker.usage_retention_s
        )
        prefix = settings.broker.key_prefix
        admission = Admission(
            client,
            prefix,
            settings.broker.queue,
            settings.edge.queue_high_water,
            settings.edge.queue_low_water,
            stale_after_s=settings.broker.inflight_stale_after_s,
            backpressure_retry_after_s=settings.edge.backpressure_retry_after_s,
        )
        return cls(
            settings=settings,
            redis=client,
            store=store,
            publisher=Publisher(broker_app(settings), settings),
            notifier=DoneNotifier(client, store.done_channel, store.progress_channel),
            apikeys=ApiKeyStore(client, prefix),
            admission=admission,
            cache=ResponseCache(client, prefix, settings.edge.cache_ttl_s),
            idempotency=IdempotencyStore(client, prefix, settings.edge.idempotency_ttl_s),
            metrics=InferenceMetricsCollector(client, prefix),
            metrics_feed=MetricsFeed(client, metrics_channel(prefix), metrics_latest_key(prefix)),
            http_requests=RequestCounter(client, http_counter_key(prefix)),
            baselines=BaselineStore(client, prefix),
            sessions=SessionStore(
                client, prefix, settings.conversations.session_ttl_s, settings.conversations.session_max_turns
            ),
            database=database,
            preferences=PreferenceStore(database.engine),
            usage=UsageStore(client, prefix, settings.broker.usage_retention_s),
            budgets=BudgetBook(client, prefix),
        )


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["batchgate"]  # type: ignore[no-any-return]
