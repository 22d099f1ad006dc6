"""The schema on real SQLite and PostgreSQL: migrations match the models, constraints hold, scopes commit
or roll back as a user action needs."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.engine import Database, make_engine
from db.migrate import alembic_config, current_revision, downgrade, upgrade
from db.schema import Base, Case, Frame, Label, User, UserRole
from tests.conftest import create_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url, drop = create_postgres_database()
        yield url
        drop()


def test_migrations_create_every_table_and_match_the_models(empty_url):
    engine = make_engine(empty_url)
    upgrade(engine)
    head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    assert current_revision(engine) == head
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    # `alembic check` fails when the models hold anything the migrations do not.
    config = alembic_config(empty_url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)  # and back up again: the downgrade is a real inverse
    assert current_revision(engine) == head
    engine.dispose()


def test_sqlite_connections_have_foreign_keys_and_wal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'pragma.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_sqlite_writers_take_turns_while_readers_run_beside_them(tmp_path):
    """A transaction takes SQLite's write lock when it begins (so a read-then-write cannot fail on a stale
    snapshot); read_scope does not, so page loads never wait for a writer."""
    database = Database.from_url(f"sqlite:///{tmp_path / 'locks.db'}")
    upgrade(database.engine)
    with database.session_scope() as writer:
        _frame(writer, 7)  # uncommitted, holding the write lock
        with database.read_scope() as reader:
            assert reader.scalar(select(Frame.id)) is None  # reads the last committed state, no waiting
        other = sqlite3.connect(tmp_path / "locks.db", timeout=0.05)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            other.execute("BEGIN IMMEDIATE")  # a second writer waits (here: gives up) from the start
        other.close()
    with database.read_scope() as reader:
        assert reader.scalar(select(Frame.sha256)) == f"{7:064x}"
    database.dispose()


def _frame(session, n: int = 1) -> Frame:
    frame = Frame(sha256=f"{n:064x}", width=854, height=480, format="PNG", size_bytes=10, path=f"x/{n}.png")
    session.add(frame)
    session.flush()
    return frame


def _case(session, key: str = "ds/v/000001") -> Case:
    case = Case(key=key, frame_id=_frame(session, abs(hash(key)) % 10**9).id, dataset="ds",
                procedure="laparoscopic_cholecystectomy")
    session.add(case)
    session.flush()
    return case


@pytest.mark.parametrize("box", [(10, 10, 5, 20), (10, 10, 20, 10), (-1, 0, 5, 5)])
def test_a_label_box_must_be_ordered_and_inside(session, box):
    case = _case(session)
    label = Label(case_id=case.id, source="t", content_sha256="0" * 64)
    label.box = box
    session.add(label)
    with pytest.raises(IntegrityError):
        session.flush()


def test_a_partial_box_is_refused(session):
    case = _case(session)
    session.add(Label(case_id=case.id, source="t", content_sha256="0" * 64, box_x1=1.0))
    with pytest.raises(IntegrityError):
        session.flush()


def test_one_current_label_per_case(session):
    case = _case(session)
    session.add(Label(case_id=case.id, source="a", content_sha256="0" * 64, is_current=True))
    session.flush()
    session.add(Label(case_id=case.id, source="b", content_sha256="0" * 64, is_current=False))
    session.flush()  # an older label beside the current one is fine
    session.add(Label(case_id=case.id, source="c", content_sha256="0" * 64, is_current=True))
    with pytest.raises(IntegrityError):
        session.flush()


def test_unknown_roles_and_splits_are_refused(session):
    session.add(User(username="u", pseudonym="R-0001", roles=[UserRole(role="superuser")]))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    case = _case(session, "ds/v/000002")
    case.split = "holdout"
    with pytest.raises(IntegrityError):
        session.flush()


def test_foreign_keys_are_enforced(session):
    session.add(Case(key="orphan", frame_id=987654, dataset="ds", procedure="p"))
    with pytest.raises(IntegrityError):
        session.flush()


def test_session_scope_commits_on_success_and_rolls_back_on_error(empty_url):
    database = Database.from_url(empty_url)
    upgrade(database.engine)
    with database.session_scope() as session:
        session.add(User(username="kept", pseudonym="R-0001"))
    with pytest.raises(RuntimeError), database.session_scope() as session:
        session.add(User(username="lost", pseudonym="R-0002"))
        session.flush()
        raise RuntimeError("the user action failed half way")
    with database.session_scope() as session:
        assert session.scalars(select(User.username)).all() == ["kept"]
        assert session.execute(text("SELECT count(*) FROM users")).scalar() == 1
    database.dispose()
