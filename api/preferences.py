"""User preferences: what a user's tasks use when a request leaves a field out.

Stored per (owner, user id), where the owner is the hash of the API key that stored them
("" when auth is off), so one key's users are invisible to every other key. One JSON
document per user, replaced whole by each write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Column, DateTime, Engine, MetaData, String, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from api.database import write_transaction
from api.generation import MODEL_NAME, Generation

#: A language name as a person writes it ("French", "pt-BR", "Simplified Chinese", "日本語").
LANGUAGE = r"^\w[\w .()\-]{0,63}$"

metadata = MetaData()

#: The table as migration 0001 creates it (``api/migrations/versions``).
user_preferences = Table(
    "user_preferences",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("document", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class Preferences(BaseModel):
    """A user's defaults: the same fields and bounds as a task request's."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str | None = Field(default=None, pattern=MODEL_NAME)
    system: str | None = Field(default=None, max_length=100_000)
    #: Answers in this language: "Answer in <language>." is added to the system text.
    language: str | None = Field(default=None, pattern=LANGUAGE)
    generation: Generation | None = None

    def document(self) -> dict[str, Any]:
        """The JSON document stored and served: only the fields that are set."""
        return self.model_dump(exclude_none=True)


@dataclass(frozen=True)
class StoredPreferences:
    preferences: Preferences
    #: When they were last written (Unix time, seconds).
    updated_at: float


class PreferenceStore:
    """Preferences in the SQL database behind ``engine`` (PostgreSQL or SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, owner: str, user_id: str) -> StoredPreferences | None:
        """The user's preferences, or None when none are stored."""
        query = select(user_preferences.c.document, user_preferences.c.updated_at).where(
            user_preferences.c.owner == owner, user_preferences.c.user_id == user_id
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return StoredPreferences(Preferences.model_validate(row.document), _timestamp(row.updated_at))

    def put(
        self, owner: str, user_id: str, preferences: Preferences, now: float | None = None
    ) -> StoredPreferences:
        """Store ``preferences`` in place of whatever the user had (an upsert)."""
        updated_at = time.time() if now is None else now
        values = {
            "owner": owner,
            "user_id": user_id,
            "document": preferences.document(),
            "updated_at": datetime.fromtimestamp(updated_at, UTC),
        }
        changes = {"document": values["document"], "updated_at": values["updated_at"]}
        dialect = self.engine.dialect.name
        with write_transaction(self.engine) as connection:
            if dialect in ("postgresql", "sqlite"):
                insert = (postgresql if dialect == "postgresql" else sqlite).insert(user_preferences)
                upsert = insert.values(values).on_conflict_do_update(
                    index_elements=[user_preferences.c.owner, user_preferences.c.user_id], set_=changes
                )
                connection.execute(upsert)
            else:  # any other dialect: update, else insert, in the same transaction
                found = connection.execute(
                    update(user_preferences)
                    .where(user_preferences.c.owner == owner, user_preferences.c.user_id == user_id)
                    .values(changes)
                )
                if found.rowcount == 0:
                    connection.execute(user_preferences.insert().values(values))
        return StoredPreferences(preferences, updated_at)

    def delete(self, owner: str, user_id: str) -> bool:
        """Forget the user's preferences; False when there were none."""
        with write_transaction(self.engine) as connection:
            result = connection.execute(
                delete(user_preferences).where(
                    user_preferences.c.owner == owner, user_preferences.c.user_id == user_id
                )
            )
        return bool(result.rowcount)


def _timestamp(value: datetime) -> float:
    """Unix time of a stored timestamp (SQLite hands it back without its zone: UTC)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
