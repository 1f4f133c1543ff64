"""Throwaway PostgreSQL databases for tests, on the server ``BATCHGATE_TEST_DATABASE_URL`` names.

Each database is created empty (``batchgate_test_<hex>``) and dropped afterwards, even with
connections still open to it, so tests never see each other's tables or leave any behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

#: A superuser (or CREATEDB) connection to the test server's maintenance database.
ADMIN_URL = os.environ.get("BATCHGATE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"the tests need a PostgreSQL server at {ADMIN_URL} (BATCHGATE_TEST_DATABASE_URL); "
            f"make test (tests/postgres.sh) starts the machine's: {exc}"
        ) from exc


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server (same user, host and port)."""
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_database(name: str) -> str:
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(name)


def drop_database(name: str) -> None:
    with _admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def new_name() -> str:
    return f"batchgate_test_{secrets.token_hex(6)}"


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new empty database's URL (``postgresql://…``), dropped on exit."""
    name = new_name()
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)
