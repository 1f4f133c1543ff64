"""Concurrency slots whose number can change while calls hold and wait for them.

An ``asyncio.Semaphore`` cannot be resized, and replacing it would let calls on the old
and the new one together exceed the new limit; this counts holders against the current
limit instead and wakes waiters in arrival order.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """At most ``limit`` holders at once (0 = unlimited); the rest wait first come, first served."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        """Slots in use now."""
        return self._held

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Apply a new limit to future acquisitions; a larger one admits waiters at once."""
        self._limit = limit
        self._wake()

    async def acquire(self) -> None:
        """Take a slot, waiting for one when all are held."""
        if not self._waiters and self._free():
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted and cancelled in the same tick: hand the slot on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back and admit the next waiter if the limit allows."""
        self._held -= 1
        self._wake()

    def _free(self) -> bool:
        return self._limit <= 0 or self._held < self._limit

    def _wake(self) -> None:
        while self._waiters and self._free():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
