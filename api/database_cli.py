"""``python -m api.database_cli migrate|current``: the preferences schema (``make migrate``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from api.database import create_database_engine, current_revision, describe, migrate
from batchgate.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.database_cli", description="batchgate preferences database"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="upgrade the schema to the newest revision (safe to repeat)")
    commands.add_parser("current", help="print the schema revision the database is at")
    args = parser.parse_args(argv)

    engine = create_database_engine(Settings.from_env())
    where = engine.url.render_as_string(hide_password=True)
    try:
        if args.command == "migrate":
            print(f"{where}: at revision {migrate(engine)}")
        else:
            with engine.connect() as connection:
                print(current_revision(connection) or "(none)")
    except SQLAlchemyError as exc:
        print(f"batchgate: database {where}: {describe(exc)}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
