"""batchgate-client: batchgate's native API from Python, sync (``Client``) and async (``AsyncClient``).

from batchgate_client import Client

with Client("http://127.0.0.1:8080", api_key) as client:
    task = client.run("Name three uses of a paperclip")
    print(task.text, task.result.usage.cost_usd)
"""

from batchgate_client._async import AsyncClient
from batchgate_client._retry import Backoff
from batchgate_client._sync import Client
from batchgate_client._types import (
    BatchgateError,
    Budget,
    BudgetExhausted,
    Event,
    NotFound,
    RateLimited,
    Task,
    TaskFailed,
    TaskResult,
    Unauthorized,
    Unavailable,
    Usage,
    UsageGroup,
    UsageReport,
    UsageTotals,
)

__all__ = [
    "AsyncClient",
    "Backoff",
    "BatchgateError",
    "Budget",
    "BudgetExhausted",
    "Client",
    "Event",
    "NotFound",
    "RateLimited",
    "Task",
    "TaskFailed",
    "TaskResult",
    "Unauthorized",
    "Unavailable",
    "Usage",
    "UsageGroup",
    "UsageReport",
    "UsageTotals",
]
