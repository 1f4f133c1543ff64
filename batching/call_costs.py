"""What a model call costs the worker's CPU: a fixed part per call and a part per item.

The adaptive flush policy weighs waiting against the fixed part (``batching.flush_policy``),
so it is measured, not guessed: each finished batch reports its items and the CPU seconds
its thread spent, and a least-squares line ``cpu = fixed + per_item * items`` is fitted over
the recent batches, the older ones weighing less (a half-life in batches), as BentoML's
adaptive batcher fits its latency. While the batches seen are all about one size the line
cannot be fitted; the per-item part is then taken as ``prior_per_item_s`` and the rest of
the mean is the fixed part. Thread-safe: batch threads report, the consumer thread reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Generator
from contextvars import ContextVar
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

#: Until a batch is seen: a call's fixed CPU cost, per item cost (measured with google-genai
#: 1.x against the simulator on this project's 2-core machine, 2026-12).
PRIOR_FIXED_S = 0.004
PRIOR_PER_ITEM_S = 0.0005
#: Batches after which an observation weighs half as much.
HALF_LIFE = 50.0
#: Smallest weighted variance of batch sizes (items²) for which the line is fitted.
MIN_SIZE_VARIANCE = 0.25


class CallCostModel:
    """A decaying least-squares fit of a batch's CPU seconds against its number of items."""

    def __init__(
        self,
        prior_fixed_s: float = PRIOR_FIXED_S,
        prior_per_item_s: float = PRIOR_PER_ITEM_S,
        half_life: float = HALF_LIFE,
    ) -> None:
        self._prior_fixed_s = prior_fixed_s
        self._prior_per_item_s = prior_per_item_s
        self._decay = 0.5 ** (1.0 / half_life)
        self._lock = threading.Lock()
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        #: The line as of the last batch: read for every message, refitted once per batch.
        self._fit = (prior_fixed_s, prior_per_item_s)

    def record(self, items: int, cpu_s: float) -> None:
        """One finished call (or batch) of ``items`` items that took ``cpu_s`` CPU seconds."""
        if items <= 0 or cpu_s < 0:
            return
        d = self._decay
        with self._lock:
            self._w = self._w * d + 1.0
            self._x = self._x * d + items
            self._y = self._y * d + cpu_s
            self._xx = self._xx * d + items * items
            self._xy = self._xy * d + items * cpu_s
            self._fit = self._line()

    def fit(self) -> tuple[float, float]:
        """``(fixed_s, per_item_s)``, each at least 0."""
        return self._fit

    def _line(self) -> tuple[float, float]:
        """Least squares over the decayed sums (called under the lock)."""
        w, x, y, xx, xy = self._w, self._x, self._y, self._xx, self._xy
        mean_x, mean_y = x / w, y / w
        variance = xx / w - mean_x * mean_x
        if variance >= MIN_SIZE_VARIANCE:
            per_item = max(0.0, (xy / w - mean_x * mean_y) / variance)
        else:
            per_item = self._prior_per_item_s
        return max(0.0, mean_y - per_item * mean_x), per_item

    @property
    def fixed_s(self) -> float:
        """The fixed CPU seconds of one call."""
        return self.fit()[0]


#: Where the model calls of the batch being run add their CPU seconds (see ``with_call_cpu``).
_CALL_CPU: ContextVar[list[float] | None] = ContextVar("batchgate_call_cpu", default=None)


async def with_call_cpu(coro: Awaitable[T]) -> tuple[T, float]:
    """Await ``coro``; also return the CPU seconds its ``metered`` calls spent on the loop's thread.

    Tasks it starts (``asyncio.gather``) copy its context, so their calls are counted too.
    """
    sink = [0.0]
    token = _CALL_CPU.set(sink)
    try:
        result = await coro
    finally:
        _CALL_CPU.reset(token)
    return result, sink[0]


def metered(awaitable: Awaitable[T]) -> Awaitable[T]:
    """``awaitable``, its own steps' thread CPU time added to the running ``with_call_cpu``.

    A coroutine runs in steps between its awaits; each step's ``time.thread_time`` is the
    call's own work (building the request, parsing the answer) and nothing of the other
    calls the loop interleaves with it. Outside ``with_call_cpu`` it is ``awaitable`` as is.
    """
    sink = _CALL_CPU.get()
    return awaitable if sink is None else _Metered(awaitable, sink)


class _Metered(Generic[T]):
    def __init__(self, awaitable: Awaitable[T], sink: list[float]) -> None:
        self._inner = awaitable.__await__()
        self._sink = sink

    def __await__(self) -> Generator[Any, Any, T]:
        inner, sink = self._inner, self._sink
        value: Any = None
        error: BaseException | None = None
        while True:
            started = time.thread_time()
            try:
                yielded = inner.send(value) if error is None else inner.throw(error)
            except StopIteration as stop:
                sink[0] += time.thread_time() - started
                return cast(T, stop.value)
            except BaseException:
                sink[0] += time.thread_time() - started
                raise
            sink[0] += time.thread_time() - started
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:  # cancellation and the like go on to the call
                value, error = None, exc
