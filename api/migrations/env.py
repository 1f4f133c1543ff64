"""Alembic's environment: migrations run only through ``api.database.migrate``, on the
connection (and in the transaction, under the migration lock) that it hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations with `make migrate` (api.database.migrate), not the alembic CLI")

context.configure(
    connection=connection,
    version_table=context.config.get_main_option("version_table") or "alembic_version",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
