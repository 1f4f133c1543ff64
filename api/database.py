"""The preferences database: one pooled SQLAlchemy engine per process, and its migrations.

``BATCHGATE_DATABASE_URL`` (or ``DATABASE_URL``) selects it: PostgreSQL in compose and the
tests, SQLite in the run folder when unset. Both go through the same Core code path; only
the engine's set-up and the migration lock differ by dialect.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from batchgate.settings import Settings

log = logging.getLogger(__name__)

#: The SQLite file in ``BATCHGATE_RUN_DIR`` when no database URL is set.
SQLITE_FILE = "batchgate.sqlite3"
#: Alembic's bookkeeping table, named so it cannot clash with another application's.
VERSION_TABLE = "batchgate_alembic_version"
#: PostgreSQL advisory lock key held while migrating ("bgmigrat"), so replicas starting
#: together migrate one after the other.
MIGRATION_LOCK_ID = 0x6267_6D69_6772_6174
#: Seconds to wait for a PostgreSQL connection before the database counts as unavailable.
CONNECT_TIMEOUT_S = 5
#: Seconds a request waits for a free pooled connection.
POOL_TIMEOUT_S = 10
#: Seconds an SQLite statement waits for another process's write lock.
SQLITE_BUSY_TIMEOUT_S = 30
#: Pause between tries to turn on WAL while another connection holds the lock.
JOURNAL_RETRY_S = 0.05
#: After a failed migration attempt, callers within this many seconds fail at once
#: instead of each trying (and waiting for a connect timeout) again.
MIGRATION_RETRY_S = 1.0

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")


class DatabaseUnavailable(Exception):
    """The database cannot be reached, or its schema could not be brought up to date."""


def database_url(settings: Settings) -> URL:
    """The SQLAlchemy URL ``settings`` name: PostgreSQL through psycopg 3, or the SQLite file."""
    raw = settings.conversations.database_url.strip()
    if not raw:
        return make_url(f"sqlite:///{Path(settings.stack.run_dir).resolve() / SQLITE_FILE}")
    for scheme in ("postgresql://", "postgres://"):
        if raw.startswith(scheme):
            raw = "postgresql+psycopg://" + raw[len(scheme) :]
    return make_url(raw)


def create_database_engine(settings: Settings) -> Engine:
    """The process's engine (no connection is made until first use)."""
    url = database_url(settings)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings.conversations.database_pool_size)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "batchgate"}
    return create_engine(
        url,
        pool_size=settings.conversations.database_pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def _sqlite_engine(url: URL, pool_size: int) -> Engine:
    """SQLite with WAL (readers never block the writer), a busy timeout for other processes'
    writes, and real transactions: pysqlite's own BEGIN handling is switched off and
    SQLAlchemy emits BEGIN (``BEGIN IMMEDIATE`` for ``write_transaction``)."""
    memory = url.database in (None, "", ":memory:")
    if memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        try:
            Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # connecting will fail and say so (503), the process still starts
            log.warning("cannot create the folder of %s: %s", url.database, exc)
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=POOL_TIMEOUT_S,
            pool_pre_ping=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        if not memory:
            _write_ahead_log(cursor, time.monotonic() + SQLITE_BUSY_TIMEOUT_S)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("batchgate_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _write_ahead_log(cursor: Any, deadline: float) -> None:
    """Turn on WAL, retrying "database is locked" until ``deadline``: SQLite answers it at once,
    without its busy timeout, where waiting could deadlock (a connection changing a fresh
    file's journal mode while another process holds the write lock to migrate it)."""
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(JOURNAL_RETRY_S)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN, so it waits
    (busy timeout) rather than failing half-way; on PostgreSQL it is a plain transaction."""
    with engine.connect() as connection:
        connection.execution_options(batchgate_write=True)
        with connection.begin():
            yield connection


def alembic_config() -> Config:
    """Alembic's configuration, without an ini file: the scripts ship inside the package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def migrate(engine: Engine) -> str | None:
    """Bring the schema to the newest revision (``alembic upgrade head``); the revision then.

    Serialised across processes: the whole upgrade runs in one transaction that first takes
    a PostgreSQL advisory lock (SQLite: the database's write lock, ``BEGIN IMMEDIATE``), so
    the replicas that start together migrate one after the other and all but the first find
    nothing to do. PostgreSQL and SQLite both roll DDL back with the transaction.
    """
    config = alembic_config()
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        return current_revision(connection)


def current_revision(connection: Connection) -> str | None:
    """The schema revision the database is at (None before the first migration)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


class Database:
    """The process's engine, migrated once on first need and retried until that works.

    The API migrates at start; when the database is down then, the first request that needs
    it tries again (a failed attempt answers the callers of the next second at once).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._migrated = False
        self._lock = threading.Lock()  # a gevent lock once gunicorn's worker has patched
        self._failed_at: float | None = None
        self._failure = ""

    @property
    def migrated(self) -> bool:
        return self._migrated

    def ensure_migrated(self, now: float | None = None) -> None:
        """Migrate unless done; raise DatabaseUnavailable when it cannot be done now."""
        if self._migrated:
            return
        with self._lock:  # one attempt at a time; those who waited see its outcome
            if self._migrated:
                return
            now = time.monotonic() if now is None else now
            if self._failed_at is not None and now - self._failed_at < MIGRATION_RETRY_S:
                raise DatabaseUnavailable(self._failure)
            try:
                revision = migrate(self.engine)
            except SQLAlchemyError as exc:
                self._failed_at, self._failure = now, describe(exc)
                raise DatabaseUnavailable(self._failure) from exc
            self._migrated, self._failed_at = True, None
            log.info("database %s at schema revision %s", self.describe_url(), revision)

    def describe_url(self) -> str:
        """The engine's URL without its password, for logs."""
        return self.engine.url.render_as_string(hide_password=True)


def describe(exc: BaseException) -> str:
    """One line about a database error, without SQLAlchemy's statement dump and link."""
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    original = getattr(exc, "orig", None) or exc
    first_line = (str(original).strip().splitlines() or [""])[0]
    return f"{type(original).__name__}: {first_line}"
