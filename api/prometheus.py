"""Prometheus exposition built from the totals in Redis, so it is right across replicas.

Every API process and worker adds to the same Redis totals; any replica's ``/metrics``
therefore shows the cluster's counts, and scraping one replica (or all: the numbers agree)
is enough. This avoids prometheus_client's multiprocess mode, which only merges the
processes of one host and loses nothing here but would need a shared folder per replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from baseline.histogram import count_at_most, representative
from baseline.slots import STAGES
from batchgate import keys as key_names
from batchgate.baseline_store import BaselineStore
from batchgate.metrics_store import TOTAL, InferenceMetricsCollector

#: Histogram bucket bounds (seconds) exposed to Prometheus, cut from the fine buckets.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


#: ``batchgate_drift_status`` per drift status (anything else, or no signal: -1).
DRIFT_STATUS_VALUES = {"ok": 0, "warn": 1, "drift": 2}


def http_counter_key(prefix: str) -> str:
    """Hash of HTTP requests answered, field ``METHOD route status``."""
    return key_names.metrics_slot(prefix, TOTAL, "http")


class RedisTotals(Collector):
    """Reads the totals at scrape time."""

    def __init__(self, client: redis.Redis, prefix: str, queue: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._queue = queue
        self._metrics = InferenceMetricsCollector(client, prefix)
        self._baselines = BaselineStore(client, prefix)

    def collect(self) -> Iterator[Metric]:
        totals = self._metrics.read([TOTAL])[TOTAL]
        counters = totals.counters
        requests = CounterMetricFamily(
            "batchgate_requests", "Finished requests by outcome.", labels=["outcome"]
        )
        for outcome in ("succeeded", "failed", "cached"):
            requests.add_metric([outcome], counters[outcome])
        yield requests
        rejections = CounterMetricFamily("batchgate_rejections", "Submissions refused.", labels=["reason"])
        rejections.add_metric(["rate_limit"], counters["rejected_rate_limit"])
        rejections.add_metric(["in_flight"], counters["rejected_in_flight"])
        rejections.add_metric(["backpressure"], counters["rejected_backpressure"])
        yield rejections
        tokens = CounterMetricFamily("batchgate_tokens", "Model tokens by direction.", labels=["direction"])
        tokens.add_metric(["input"], counters["input_tokens"])
        tokens.add_metric(["output"], counters["output_tokens"])
        yield tokens

        latency = HistogramMetricFamily(
            "batchgate_latency_seconds", "Request latency by stage.", labels=["stage"]
        )
        for stage in STAGES:
            counts = totals.histograms[stage]
            buckets: list[tuple[str, Any]] = [
                (repr(le), count_at_most(counts, le * 1000)) for le in LATENCY_BUCKETS_S
            ]
            buckets.append(("+Inf", sum(counts.values())))
            total_s = sum(representative(i) * n for i, n in counts.items()) / 1000
            latency.add_metric([stage], buckets, total_s)
        yield latency

        batch = CounterMetricFamily(
            "batchgate_batched_requests",
            "Processed requests by the size of their batch.",
            labels=["batch_size"],
        )
        for size, n in sorted(totals.batch_sizes.items()):
            batch.add_metric([str(size)], n)
        yield batch

        http = CounterMetricFamily(
            "batchgate_http_requests",
            "HTTP requests answered by the API.",
            labels=["method", "route", "status"],
        )
        for name, count in sorted(self._redis.hgetall(http_counter_key(self._prefix)).items()):
            text = name.decode() if isinstance(name, bytes) else str(name)
            method, route, status = [*text.split(" "), "", "", ""][:3]
            http.add_metric([method, route, status], int(count))
        yield http

        depth = GaugeMetricFamily("batchgate_queue_depth", "Requests waiting in the queue.")
        depth.add_metric([], int(self._redis.llen(self._queue)))
        yield depth

        drift = self._baselines.last_drift()
        drift_status = str(drift.get("status")) if drift else ""
        gauge = GaugeMetricFamily(
            "batchgate_drift_status",
            "Latency drift against the active baseline: 0 ok, 1 warn, 2 drift, "
            "-1 insufficient data or no baseline.",
        )
        gauge.add_metric([], DRIFT_STATUS_VALUES.get(drift_status, -1))
        yield gauge
