"""A hand-driven stand-in for the Celery worker consumer that a batch task's ``Strategy`` runs on."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.concurrency.base import apply_target


@dataclass
class Clock:
    """The consumer's clock: it reads what the test last set."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Wakeup:
    """One entry on the consumer's timer; it runs only when the test fires it."""

    delay: float
    fun: Callable[[], None]
    repeats: bool
    done: bool = False

    def cancel(self) -> None:
        self.done = True


class ManualTimer:
    """The kombu timer of the worker's consumer, as ``Strategy`` uses it, fired by hand."""

    def __init__(self) -> None:
        self.wakeups: list[Wakeup] = []

    def call_after(
        self, secs: float, fun: Callable[..., None], args: tuple[Any, ...] = (), priority: int = 0
    ) -> Wakeup:
        return self._add(Wakeup(secs, functools.partial(fun, *args), repeats=False))

    def call_repeatedly(
        self, secs: float, fun: Callable[..., None], args: tuple[Any, ...] = (), priority: int = 0
    ) -> Wakeup:
        return self._add(Wakeup(secs, functools.partial(fun, *args), repeats=True))

    def _add(self, wakeup: Wakeup) -> Wakeup:
        self.wakeups.append(wakeup)
        return wakeup

    def pending(self) -> list[float]:
        """The delays of the one-shot wake-ups still to come."""
        return [w.delay for w in self.wakeups if not w.repeats and not w.done]

    def fire(self) -> None:
        """Run the one-shot wake-ups still to come, as the timer would at their time."""
        for wakeup in [w for w in self.wakeups if not w.repeats and not w.done]:
            wakeup.done = True
            wakeup.fun()


class GatedPool:
    """The worker's pool: runs a batch at once (celery's ``apply_target``, as the solo pool
    does), or, while ``hold`` is set, keeps it running until ``run_held``."""

    def __init__(self) -> None:
        self.hold = False
        self.held: list[Callable[[], None]] = []

    def apply_async(self, target: Callable[..., Any], args: tuple[Any, ...] = (), **options: Any) -> None:
        run = functools.partial(apply_target, target, args, **options)
        if self.hold:
            self.held.append(run)
        else:
            run()


@dataclass
class StandInConsumer:
    """What ``Strategy`` and the task read of celery's worker consumer (task events off)."""

    pool: GatedPool = field(default_factory=GatedPool)
    timer: ManualTimer = field(default_factory=ManualTimer)
    hostname: str = "consumer-test@localhost"
    connection_errors: tuple[type[Exception], ...] = ()
    event_dispatcher: None = None
    soon: list[Callable[[], None]] = field(default_factory=list)

    def call_soon(self, fun: Callable[..., Any], *args: Any) -> None:
        self.soon.append(functools.partial(fun, *args))

    def run_soon(self) -> None:
        """One turn of the event loop: what was handed to it runs now."""
        while self.soon:
            self.soon.pop(0)()
