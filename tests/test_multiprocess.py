"""Several processes on one database: app processes started together migrate once (advisory lock on
PostgreSQL, file lock on SQLite), share sessions and the database behind one proxy, and two OS processes
writing judgments and annotation versions at once lose nothing: every acknowledged write is stored exactly
once, revisions and version chains stay clean, and a stale save is refused as an EditConflict."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from annotation.workflow import GoZoneDraft, save_version
from db.engine import Database
from db.frames import FrameStore
from db.migrate import alembic_config, upgrade
from db.schema import Annotation, AuditEvent, Case, Judgment, OutputRating, ReviewItem
from db.users import actor
from tests import multiprocess_workers as workers_module
from tests.conftest import create_postgres_database
from tests.deployment_seed import ANNOTATORS, PASSWORD, REVIEWERS, seed_installation
from tests.multiprocess_workers import EDITED_CASES
from tests.web_helpers import free_port, login

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    url, drop = create_postgres_database()
    yield url
    drop()


def _head_revision(url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


# --- migrations raced by several processes ---------------------------------------------------------

def test_processes_started_together_migrate_the_database_once(database_url):
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(3)
    workers = [spawn.Process(target=workers_module.migrate, args=(database_url, barrier)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    database = Database.from_url(database_url)
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            _head_revision(database_url)]
    database.dispose()


# --- two writer processes -----------------------------------------------------------------------------

def _run_writers(url: str, folder: Path) -> list[dict]:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    outs = [folder / f"writer{n}.json" for n in range(2)]
    workers = [spawn.Process(target=workers_module.writer, args=(url, n, barrier, str(outs[n])))
               for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(90)
    assert [w.exitcode for w in workers] == [0, 0]
    logs = [json.loads(out.read_text()) for out in outs]
    for log in logs:
        assert "crash" not in log, log["crash"]
    return logs


def _check_nothing_lost(database: Database, logs: list[dict]) -> Counter:
    """Assert every acknowledged write is stored exactly once and the stored history is clean; returns the
    refusals by kind."""
    acked_judgments = [row for log in logs for row in log["judgments"]]
    acked_versions = [row for log in logs for row in log["annotations"]]
    with database.session_scope() as session:
        stored = {j.id: (j.item_id, j.revision, j.comment, j.is_current)
                  for j in session.scalars(select(Judgment))}
        assert sorted(row[0] for row in acked_judgments) == sorted(stored)  # exactly once, none extra
        for judgment_id, item_id, revision, comment in acked_judgments:
            assert stored[judgment_id][:3] == (item_id, revision, comment)
        by_item: dict[int, list] = {}
        for item_id, revision, _, current in stored.values():
            by_item.setdefault(item_id, []).append((revision, current))
        for item_id, revisions in by_item.items():
            revisions.sort()
            assert [r for r, _ in revisions] == list(range(1, len(revisions) + 1)), item_id
            assert [c for _, c in revisions] == [False] * (len(revisions) - 1) + [True], item_id
        ratings = session.execute(select(OutputRating.judgment_id, func.count())
                                  .group_by(OutputRating.judgment_id))
        assert {count for _, count in ratings} == {3} and len(stored) > 0

        versions = {a.id: (a.case_id, a.version, a.parent_id, a.location)
                    for a in session.scalars(select(Annotation).where(Annotation.lane == 0))}
        seeded = {v for v, (_, _, _, location) in versions.items() if location == "v1"}
        assert sorted(row[0] for row in acked_versions) == sorted(set(versions) - seeded)
        for version_id, case_id, version, parent_id, tag in acked_versions:
            assert versions[version_id] == (case_id, version, parent_id, tag)
        chains: dict[int, list] = {}
        for version_id, (case_id, version, parent_id, _) in versions.items():
            chains.setdefault(case_id, []).append((version, version_id, parent_id))
        for chain in chains.values():
            chain.sort()
            assert [v for v, _, _ in chain] == list(range(1, len(chain) + 1))
            assert [p for _, _, p in chain] == [None] + [i for _, i, _ in chain[:-1]]  # each on the last
    refused = Counter(kind for log in logs for kind in log["refused"])
    # Each writer's first save on every case starts from the same base: one of each pair is refused, as an
    # EditConflict the editor shows; a judgment is never refused (concurrent submits become revisions).
    assert refused["EditConflict"] >= EDITED_CASES
    messages = sorted({m for log in logs for m in log["messages"]})
    assert set(refused) == {"EditConflict"}, f"writes failed with errors a user sees as a crash: {refused} " \
                                             f"{messages}"
    return refused


def _seed_for_writers(url: str, frames: Path) -> Database:
    database = Database.from_url(url)
    upgrade(database.engine)
    seed_installation(database, FrameStore(frames), judge=False)
    with database.session_scope() as session:
        for case in session.scalars(select(Case.id).order_by(Case.id).limit(EDITED_CASES)):
            save_version(session, actor(session, "admin1"), case, GoZoneDraft("A", (1.0, 1.0, 50.0, 50.0),
                                                                              location="v1"), base_id=None)
    return database


def test_two_writer_processes_lose_no_judgment_and_no_annotation_version(database_url, tmp_path):
    database = _seed_for_writers(database_url, tmp_path / "frames")
    started = time.perf_counter()
    logs = _run_writers(database_url, tmp_path)
    seconds = time.perf_counter() - started
    acked = sum(len(log["judgments"]) + len(log["annotations"]) for log in logs)
    print(f"\n{database.engine.dialect.name}: {acked} writes acknowledged in {seconds:.1f} s")
    refused = _check_nothing_lost(database, logs)
    print(f"refused: {dict(refused)}")
    with database.session_scope() as session:
        open_items = select(func.count()).select_from(ReviewItem).where(ReviewItem.state != "judged")
        assert session.scalar(open_items) == 0
    database.dispose()


# --- two app processes behind one proxy ---------------------------------------------------------------

def _start_server(url: str, data_dir: Path, frames: Path) -> tuple[subprocess.Popen, str, Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "SURGREVIEW_DATABASE_URL": url, "SURGREVIEW_DATA_DIR": str(data_dir),
           "SURGREVIEW_FRAME_STORE_DIR": str(frames), "SURGREVIEW_SECRET_KEY": "shared-by-every-process-" * 2,
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    log = data_dir / "server.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", log


def _wait_healthy(process: subprocess.Popen, base: str, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the app exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the app did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _sign_in(base: str, username: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=30) as client:
        response = login(client, username, PASSWORD)
        assert response.status_code == 303, response.text
        return dict(client.cookies)


@pytest.mark.postgres
def test_two_app_processes_share_one_postgresql_database(tmp_path):
    url, drop = create_postgres_database()
    frames = tmp_path / "frames"
    servers = [_start_server(url, tmp_path / f"app{n}", frames) for n in range(2)]  # both migrate at once
    database = None
    try:
        for process, base, log in servers:
            _wait_healthy(process, base, log)
        database = Database.from_url(url)
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                _head_revision(url)]
        seed_installation(database, FrameStore(frames), judge=False)
        bases = [base for _, base, _ in servers]

        # Sign-ins (each one audited: a write) hammer both processes at once, from 8 threads.
        users = [*REVIEWERS, *ANNOTATORS]
        attempts = [(bases[n % 2], users[n % len(users)]) for n in range(24)]
        with ThreadPoolExecutor(8) as pool:
            cookies = list(pool.map(lambda a: _sign_in(*a), attempts))
        with database.session_scope() as session:
            logins = session.scalar(select(func.count()).select_from(AuditEvent)
                                    .where(AuditEvent.action == "auth.login"))
        assert logins == len(attempts)

        # A session started on one process is honoured by the other (shared key, users re-checked in the DB).
        for (base, _), jar in zip(attempts[:2], cookies[:2], strict=True):
            other = bases[1 - bases.index(base)]
            assert httpx.get(f"{other}/app/", cookies=jar, timeout=30).status_code == 200
            assert httpx.get(f"{other}/app/", timeout=30).status_code in (303, 307, 401)

        # And while both app processes serve, two writer processes judge and annotate the same database.
        with database.session_scope() as session:
            for case in session.scalars(select(Case.id).order_by(Case.id).limit(EDITED_CASES)):
                save_version(session, actor(session, "admin1"), case, GoZoneDraft(
                    "A", (1.0, 1.0, 50.0, 50.0), location="v1"), base_id=None)
        _check_nothing_lost(database, _run_writers(url, tmp_path))
        for process, base, log in servers:
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    finally:
        for process, _, _ in servers:
            _stop(process)
        if database is not None:
            database.dispose()
        drop()
