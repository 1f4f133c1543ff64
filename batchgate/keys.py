"""Redis keys and channels the workers write and the API reads (named once, for both)."""

from __future__ import annotations


def workers_key(prefix: str) -> str:
    """Sorted set of consumer names scored by their last heartbeat (wall clock)."""
    return f"{prefix}:workers"


def metrics_latest_key(prefix: str) -> str:
    """Where the latest metrics snapshot (JSON) is kept."""
    return f"{prefix}:metrics:latest"


def metrics_channel(prefix: str) -> str:
    """Where every metrics snapshot is published."""
    return f"{prefix}:metrics"


# --- tasks -----------------------------------------------------------------------------------


def task(prefix: str, task_id: str) -> str:
    """A task's record (hash)."""
    return f"{prefix}:task:{task_id}"


def task_deltas(prefix: str, task_id: str) -> str:
    """A streamed task's chunks of text (list)."""
    return f"{prefix}:task:{task_id}:deltas"


def done_channel(prefix: str) -> str:
    """Where a finished task's id is published (long-polls wake on it)."""
    return f"{prefix}:done"


def progress_channel(prefix: str) -> str:
    """Where a task's progress (running, a chunk) is published (event streams wake on it)."""
    return f"{prefix}:progress"


def inflight(prefix: str) -> str:
    """Unfinished tasks scored by submission time (sorted set): what the orphan sweeper scans."""
    return f"{prefix}:inflight"


# --- keys, tenants and admission ---------------------------------------------------------------


def api_key(prefix: str, key_hash: str) -> str:
    """An API key's record (hash: tier, tenant, ...), by the key's hash."""
    return f"{prefix}:apikey:{key_hash}"


def api_keys(prefix: str) -> str:
    """The hashes of every API key (set)."""
    return f"{prefix}:apikeys"


def tenants(prefix: str) -> str:
    """Every tenant's name (set)."""
    return f"{prefix}:tenants"


def tenant_inflight_prefix(prefix: str) -> str:
    """Prefix of each tenant's unfinished task ids (sorted set per tenant)."""
    return f"{prefix}:tenant-inflight:"


def bucket(prefix: str, identity: str) -> str:
    """A caller's token bucket (rate limit)."""
    return f"{prefix}:bucket:{identity}"


def backpressure(prefix: str) -> str:
    """Set while the queue is over its high-water mark, until it is under the low one."""
    return f"{prefix}:backpressure"


def idempotency(prefix: str, owner: str, digest: str) -> str:
    """An ``Idempotency-Key``'s claim, per owner (the key's digest)."""
    return f"{prefix}:idem:{owner}:{digest}"


# --- answers, conversations -----------------------------------------------------------------


def cache_prefix(prefix: str) -> str:
    """Prefix of every response cache entry."""
    return f"{prefix}:cache:"


def cache_entry(prefix: str, tenant: str, digest: str) -> str:
    """A cached answer, per tenant."""
    return f"{cache_prefix(prefix)}{tenant}:{digest}"


def session(prefix: str, digest: str) -> str:
    """A conversation's meta (hash); its turns are this + ``:turns`` (digest of tenant and id)."""
    return f"{prefix}:session:{digest}"


# --- workers --------------------------------------------------------------------------------


def lease_holders(prefix: str) -> str:
    """Worker processes holding leases, scored by their last beat (sorted set)."""
    return f"{prefix}:lease-holders"


def lease_prefix(prefix: str) -> str:
    """Prefix of each holder's lease (hash of delivery tag -> task id)."""
    return f"{prefix}:lease:"


def model_quota(prefix: str, model: str, part: str) -> str:
    """A model's shared quota state (``ClusterPacer``): ``rpm`` and ``tpm`` schedules (the
    theoretical arrival time of the next call or token), ``rpd:<Pacific date>`` (calls made
    that day) and ``paused`` (Gemini refused the model for the day)."""
    return f"{prefix}:quota:{model}:{part}"


def usage_prefix(prefix: str) -> str:
    """Prefix of every tenant's usage counts (``usage``)."""
    return f"{prefix}:usage:"


def usage(prefix: str, tenant: str, period: str) -> str:
    """A tenant's usage counts of a UTC day (``YYYY-MM-DD``) or month (``YYYY-MM``) (hash:
    totals, ``key:<owner>:<count>``, ``model:<model>:<count>``)."""
    return f"{usage_prefix(prefix)}{tenant}:{period}"


def usage_tenants(prefix: str, month: str) -> str:
    """The tenants with usage counted in a UTC month (set)."""
    return f"{prefix}:usage-tenants:{month}"


def budget(prefix: str, tenant: str) -> str:
    """A tenant's monthly budgets (hash: ``tokens``, ``usd``, ``key:<owner>:tokens``...)."""
    return f"{prefix}:budget:{tenant}"


def budgeted_tenants(prefix: str) -> str:
    """The tenants a budget was ever set for (set)."""
    return f"{prefix}:budgeted-tenants"


def bulk_pending(prefix: str) -> str:
    """Bulk-lane task ids waiting to be gathered into a Gemini batch job (pushed left, taken right)."""
    return f"{prefix}:bulk:pending"


def bulk_held(prefix: str, holder: str) -> str:
    """The bulk-lane task ids a worker process is answering through a Gemini batch job."""
    return f"{prefix}:bulk:held:{holder}"


def warm_report(prefix: str, token: str) -> str:
    """Where a ``make warm-cache`` run's worker reports how it went."""
    return f"{prefix}:warm:{token}"


# --- metrics, baseline ---------------------------------------------------------------------------


def metrics_slot(prefix: str, slot: object, kind: str) -> str:
    """One 10-second metrics slot's data of ``kind`` (or the running totals, ``slot`` TOTAL)."""
    return f"{prefix}:m:{slot}:{kind}"


def metrics_streams(prefix: str, bucket_name: str) -> str:
    """The metrics streams a key has open (the per-key cap, across replicas)."""
    return f"{prefix}:metrics:streams:{bucket_name}"


def baseline_active(prefix: str) -> str:
    """The active PerformanceBaseline (JSON)."""
    return f"{prefix}:baseline:active"


def drift_latest(prefix: str) -> str:
    """The last drift signal (JSON)."""
    return f"{prefix}:drift:latest"
