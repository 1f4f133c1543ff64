"""A task that names a ``user_id`` gets that user's stored preferences under its own fields."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from api.database import DatabaseUnavailable, describe
from api.edge import authenticate
from api.errors import ApiError
from api.generation import Generation
from api.preferences import Preferences, PreferenceStore
from api.schemas import TaskRequest
from api.services import Services

log = logging.getLogger(__name__)

#: Errors that mean the database cannot be used now (down, unreachable, pool exhausted).
UNAVAILABLE = (DatabaseUnavailable, OperationalError, InterfaceError, PoolTimeoutError)


def merge_preferences(task: TaskRequest, preferences: Preferences) -> TaskRequest:
    """``task`` with ``preferences`` filling in what it leaves out; the request always wins.

    model and system: the request's when it gives one; a preferred language adds
    "Answer in <language>." to the system text used; generation settings merge key by key.
    """
    updates: dict[str, object] = {}
    if task.model is None and preferences.model is not None:
        updates["model"] = preferences.model
    system = task.system if task.system is not None else preferences.system
    if preferences.language:
        line = f"Answer in {preferences.language}."
        system = f"{system}\n\n{line}" if system else line
    if system != task.system:
        updates["system"] = system
    if preferences.generation is not None:
        merged = preferences.generation.model_dump(exclude_none=True)
        if task.generation is not None:
            merged.update(task.generation.model_dump(exclude_none=True))
        updates["generation"] = Generation.model_validate(merged)
    return task.model_copy(update=updates) if updates else task


def with_preferences(svc: Services, task: TaskRequest) -> TaskRequest:
    """The task as it runs: merged with its user's preferences when it names a user.

    A task naming a user while the database is down is refused (503), never run without them.
    """
    if task.user_id is None:
        return task
    owner = authenticate(svc).owner or ""
    with database_errors():
        stored = preference_store(svc).get(owner, task.user_id)
    return task if stored is None else merge_preferences(task, stored.preferences)


def preference_store(svc: Services) -> PreferenceStore:
    """The store, once the schema is up to date (a migration that failed at start is retried)."""
    svc.database.ensure_migrated()
    return svc.preferences


@contextmanager
def database_errors() -> Iterator[None]:
    """Answer 503 ``database_unavailable`` when the database cannot be used."""
    try:
        yield
    except UNAVAILABLE as exc:
        log.warning("preferences database unavailable: %s", describe(exc))
        raise ApiError(
            503,
            "database_unavailable",
            "the preferences database is unavailable; retry later",
            {"Retry-After": "1"},
        ) from None
