"""Faults, processes killed mid-write (backends that hang or die and a database that goes away are in
tests/test_faults_outages.py).

- The app (a subprocess) is killed with SIGKILL at random moments while simulated reviewers and annotators
  submit judgments and save Go Zone versions (tests/load_users.py), then restarted: after every restart
  the database passes its integrity and foreign-key checks, every judgment and version a client was told
  about is there once (a write whose answer never left the killed server may be there or not), and the
  app serves again.
- ``surgreview import frames`` and ``surgreview export sft`` are killed while they write (seen by their
  files appearing): no frame file differs from its sha256 name, every frame row has its file, no export
  folder exists without its manifest, and running the command again completes.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, func, select, text

from db.engine import Database
from db.schema import Case, Frame
from tests.browser import ROOT
from tests.conftest import create_postgres_database
from tests.load_harness import seed_site, server_env, start_server, synthetic_frames
from tests.load_users import Ledger, check_database, simulate

KILL_ROUNDS = 3  # per database; each round is a server start (~8 s here) and a run until the kill


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield ""
        return
    url, drop = create_postgres_database()
    yield url
    drop()


def _url(data_dir: Path, database_url: str) -> str:
    return database_url or f"sqlite:///{data_dir / 'surgreview.db'}"


def assert_consistent(url: str) -> None:
    """SQLite: integrity_check is ok and no foreign key dangles. PostgreSQL enforces foreign keys itself:
    none of them may be left unvalidated."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            else:
                assert connection.execute(text("SELECT conname FROM pg_constraint WHERE contype = 'f' "
                                               "AND NOT convalidated")).all() == []
    finally:
        engine.dispose()


def assert_frame_store_whole(data_dir: Path, url: str) -> int:
    """Every frame file's content matches its sha256 name and every Frame row's file exists. Returns how
    many temporary ``.part`` files a killed writer left (never read as frames)."""
    root = data_dir / "frames"
    parts = 0
    for path in root.rglob("*"):
        if not path.is_file() or path.parts[len(root.parts)] == "thumbs":
            continue
        if path.name.startswith("."):
            parts += 1
            continue
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem, f"half file {path}"
    database = Database.from_url(url)
    try:
        with database.session_scope() as session:
            for frame in session.scalars(select(Frame)):
                stored = root / frame.path
                assert stored.is_file(), f"frame {frame.id} has no file"
                assert hashlib.sha256(stored.read_bytes()).hexdigest() == frame.sha256
    finally:
        database.dispose()
    return parts


# --- SIGKILL during judgments and annotation saves --------------------------------------------------------


def _kill_when_busy(server, ledger: Ledger, rng: random.Random, killed: dict) -> threading.Thread:
    """Kill ``server`` at a random moment once the users have stored something (so they are mid-work)."""
    def watch() -> None:
        deadline = time.monotonic() + 90
        while len(ledger.judgments) + len(ledger.versions) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        killed["at"] = len(ledger.judgments) + len(ledger.versions)
        server.kill()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_killed_server_keeps_every_acknowledged_judgment_and_version(tmp_path, database_url):
    site = seed_site(tmp_path, database_url, reviewers=4, annotators=2, extra_cases=24)
    url, rng, total = _url(tmp_path, database_url), random.Random(20), Ledger()
    users = len(site.reviewers) + len(site.annotators)
    for round_ in range(KILL_ROUNDS):
        server = start_server(tmp_path, database_url, log_name=f"server-{round_}.log")
        assert_consistent(url)
        assert check_database(url, total, site.reviewers, site.annotators,
                              allow_unacknowledged=users * round_) == []
        ledger, killed = Ledger(), {}
        watcher = _kill_when_busy(server, ledger, rng, killed)
        simulate(server.url, site.reviewers, site.annotators, 60.0, ledger)
        watcher.join(timeout=120)
        assert server.process.returncode == -9, "the server was not killed"
        total.judgments += ledger.judgments
        total.versions += ledger.versions
    server = start_server(tmp_path, database_url, log_name="server-last.log")
    try:
        assert_consistent(url)
        assert check_database(url, total, site.reviewers, site.annotators,
                              allow_unacknowledged=users * KILL_ROUNDS) == []
        assert len(total.judgments) >= KILL_ROUNDS and len(total.versions) >= KILL_ROUNDS
        # The restarted app works as before: a short clean run, checked exactly.
        after = simulate(server.url, site.reviewers[:2], site.annotators[:1], 3.0)
        assert after.errors == [] and after.judgments
    finally:
        server.stop()
    total.judgments += after.judgments
    total.versions += after.versions
    assert check_database(url, total, site.reviewers, site.annotators,
                          allow_unacknowledged=users * KILL_ROUNDS) == []


# --- SIGKILL during an import and an export ---------------------------------------------------------------


def _surgreview(data_dir: Path, database_url: str, *args: str, log: Path) -> subprocess.Popen:
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT,
                                env=server_env(data_dir, database_url), stdout=handle, stderr=subprocess.STDOUT)


def _kill_after(process: subprocess.Popen, started: callable, rng: random.Random, most_s: float) -> bool:
    """Wait until ``started()`` (the command is writing), then SIGKILL it after up to ``most_s``. True when
    it was still running at the kill."""
    deadline = time.monotonic() + 120
    while not started() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, most_s))
    alive = process.poll() is None
    process.kill()
    process.wait(timeout=30)
    return alive


def _files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_killed_import_leaves_no_half_frame_and_a_rerun_imports_everything(tmp_path, database_url):
    seed_site(tmp_path, database_url, reviewers=1, annotators=0, extra_cases=0)
    url, rng, frames = _url(tmp_path, database_url), random.Random(7), tmp_path / "frames"
    source = synthetic_frames(tmp_path / "incoming", 60, seed=11)
    during = 0
    for round_ in range(4):
        before = _files(frames)
        process = _surgreview(tmp_path, database_url, "import", "frames", str(source), "--dataset", "killed",
                              log=tmp_path / "import.log")
        during += _kill_after(process, lambda b=before: _files(frames) > b, rng, 0.5)
        assert_consistent(url)
        assert_frame_store_whole(tmp_path, url)
    assert during >= 1, "no kill landed while the import was writing"
    done = _surgreview(tmp_path, database_url, "import", "frames", str(source), "--dataset", "killed",
                       log=tmp_path / "import.log")
    assert done.wait(timeout=300) == 0, (tmp_path / "import.log").read_text()[-2000:]
    assert_consistent(url)
    assert_frame_store_whole(tmp_path, url)
    database = Database.from_url(url)
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Case).where(Case.dataset == "killed")) == 60
    database.dispose()


def _assert_bundle_whole(target: Path) -> None:
    manifest = orjson.loads((target / "manifest.json").read_bytes())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == entry["sha256"], name


def test_killed_export_leaves_no_folder_without_its_manifest(tmp_path):
    seed_site(tmp_path, "", reviewers=1, annotators=0, extra_cases=0)
    rng, exports = random.Random(3), tmp_path / "exports"
    exports.mkdir()
    during = 0
    for round_ in range(5):
        target = exports / f"sft-{round_}"
        process = _surgreview(tmp_path, "", "export", "sft", "--out", str(target), log=tmp_path / "export.log")
        during += _kill_after(process, lambda t=target: any(exports.glob(f".{t.name}.partial-*")), rng, 0.3)
        for folder in exports.iterdir():
            if not folder.name.startswith("."):
                _assert_bundle_whole(folder)  # a folder under a target's name is always a whole bundle
    assert during >= 1, "no kill landed while the export was writing"
    for round_ in range(5):  # each killed export again: it completes and clears what the killed one left
        again = exports / f"sft-{round_}"
        if not again.exists():
            done = _surgreview(tmp_path, "", "export", "sft", "--out", str(again), log=tmp_path / "export.log")
            assert done.wait(timeout=300) == 0, (tmp_path / "export.log").read_text()[-2000:]
        _assert_bundle_whole(again)
    assert [p.name for p in exports.iterdir() if ".partial-" in p.name] == []
