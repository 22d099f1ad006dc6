"""One engine per process and the transaction scope of a user action.

Services take a ``Session`` and never commit; the caller of a user action opens ``session_scope()``,
which commits when the action returns and rolls back when it raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # pysqlite's own transaction handling breaks SAVEPOINT; let SQLAlchemy emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # noqa: ANN001
        # IMMEDIATE takes the write lock as the transaction starts (waiting up to busy_timeout). A deferred one
        # that read first fails at once with "database is locked" when another process committed meanwhile
        # (its WAL snapshot is stale; no busy wait applies). Long readers (backup) ask for DEFERRED.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL), configured the same way everywhere."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


@dataclass
class Database:
    """The process's engine and session factory; create one per process."""

    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False) -> Database:
        engine = make_engine(url, echo=echo)
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """One transaction for one user action: commit on success, roll back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_scope(self) -> Iterator[Session]:
        """A transaction that only reads (rolled back at the end). On SQLite it starts DEFERRED, so it runs
        beside a writer instead of queueing for the write lock that every other transaction takes."""
        session = self.sessions(bind=self.engine.execution_options(sqlite_begin="DEFERRED"))
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
