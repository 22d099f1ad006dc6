"""Alembic migrations, run programmatically (``surgreview db upgrade``; the app upgrades on start).

Several app processes may start at once on one database: on PostgreSQL each takes a transaction-scoped
advisory lock before looking at the schema, so one migrates and the others then find it at head. SQLite
serialises writers with its file lock; a process whose read snapshot went stale while another migrated
gets "database is locked" at once (the busy timeout does not apply to that case) and simply tries again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import OperationalError

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key shared by every SurgReview process ("SurgRevi" as a 64-bit integer).
MIGRATION_LOCK_KEY = 0x5375726752657669
SQLITE_ATTEMPTS = 20


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other process migrates in at the same time (PostgreSQL advisory lock)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        yield connection


def _run_locked(engine: Engine, step: str, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    attempts = SQLITE_ATTEMPTS if engine.dialect.name == "sqlite" else 1
    for attempt in range(1, attempts + 1):
        try:
            with _migration_transaction(engine) as connection:
                config.attributes["connection"] = connection
                getattr(command, step)(config, revision)
            return
        except OperationalError as exc:
            if attempt == attempts or "database is locked" not in str(exc):
                raise
            time.sleep(0.05 * attempt)  # another process is migrating; start again from what it committed


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database of ``engine`` to ``revision`` inside one transaction, one process at a time."""
    _run_locked(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database of ``engine`` back to ``revision`` (same locking as ``upgrade``)."""
    _run_locked(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
