"""Faults: processes killed mid-write, model backends that hang or die, a database that goes away.

- The app (a subprocess) is killed with SIGKILL at random moments while simulated reviewers and annotators
  submit judgments and save Go Zone versions (tests/load_harness.py), then restarted: after every restart
  the database passes its integrity and foreign-key checks, every judgment and version a client was told
  about is there once (a write whose answer never left the killed server may be there or not), and the
  app serves again.
- ``surgreview import frames`` and ``surgreview export sft`` are killed while they write (seen by their
  files appearing): no frame file differs from its sha256 name, every frame row has its file, no export
  folder exists without its manifest, and running the command again completes.
- An OpenAI-compatible backend that hangs past the timeout, closes every connection, or is killed mid-run:
  the run records the failure on each case it could not predict and finishes; while a Compare of a hanging
  model runs, other sessions and /healthz answer at once.
- PostgreSQL going away for a moment (the app reaches it through a TCP forwarder that the test stops and
  starts again; its backends are also terminated with pg_terminate_backend): the user gets the "database
  is not answering" message, and the same action succeeds once the database is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from db.schema import Case, Frame, Prediction, Run
from models.backends import ModelSpec, create_backend
from models.runner import run_predictions
from tests.browser import ROOT, free_port
from tests.conftest import create_postgres_database
from tests.fake_openai_server import Behaviour, FakeOpenAIServer
from tests.load_harness import (
    ADMIN,
    GradioSession,
    Ledger,
    check_database,
    fetch_config,
    new_client,
    reviewer_names,
    seed_site,
    server_env,
    sign_in,
    simulate,
    start_server,
    synthetic_frames,
)
from tests.review_app import load_demo

OUTAGE_MESSAGE = "The database is not answering right now"
KILL_ROUNDS = 3  # per database; each round is a server start (~8 s here) and a run until the kill
RESPONSIVE_S = 3.0  # an answer "at once" on a 2-core machine shared with other test runs


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


# --- model backends that hang or die ----------------------------------------------------------------------


class ClosingServer:
    """Accepts connections on 127.0.0.1 and closes each at once, without an answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self.stopped:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            connection.recv(65536)
            connection.close()

    def stop(self) -> None:
        self.stopped = True
        self.sock.close()


def _stop_after(server: FakeOpenAIServer, completions: int) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(server.completions) < completions and time.monotonic() < deadline:
            time.sleep(0.005)
        server.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("fault", ["hangs", "closes", "dies"])
def test_a_backend_fault_is_recorded_per_case_and_the_run_finishes(tmp_path, fault):
    database = Database.from_url(f"sqlite:///{tmp_path / 'faults.db'}")
    upgrade(database.engine)
    store = FrameStore(tmp_path / "frames")
    load_demo(database, store)
    with database.session_scope() as session:
        case_ids = list(session.scalars(select(Case.id).order_by(Case.id)))
    if fault == "closes":
        server = ClosingServer()
    else:
        behaviour = Behaviour(hang_s=30.0) if fault == "hangs" else Behaviour(reply="<answer> B </answer>",
                                                                            latency_s=0.2)
        server = FakeOpenAIServer(behaviour).start()
    watcher = _stop_after(server, 6) if fault == "dies" else None
    spec = ModelSpec(name=f"faulty-{fault}", backend="openai", url=server.url, family="qwen3-vl",
                     box_convention="rel1000", timeout_s=1.0, max_retries=1, concurrency=4)
    backend = create_backend(spec)
    started = time.monotonic()
    try:
        progress = run_predictions(database, store, backend, "phase", case_ids, batch_size=4)
    finally:
        backend.close()
        server.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the run took {elapsed:.0f} s"
    with database.session_scope() as session:
        run = session.scalar(select(Run).where(Run.model.has(name=spec.name)))
        predictions = session.scalars(select(Prediction).where(Prediction.run_id == run.id)).all()
        assert run.status == "failed" and run.finished_at is not None
        assert sorted(p.case_id for p in predictions) == case_ids  # every case has its outcome
        failed = [p for p in predictions if p.error]
        assert len(failed) == progress.failed and all(p.raw_text in (None, "") for p in failed)
    if fault == "dies":
        assert progress.predicted >= 4 and progress.failed >= 1
        watcher.join(timeout=5)
    else:
        assert progress.failed == len(case_ids) and progress.predicted == 0
        assert all(("timeout" in p.error) == (fault == "hangs") for p in failed), failed[0].error
    database.dispose()


def _write_registry(data_dir: Path, name: str, url: str, timeout_s: float) -> None:
    (data_dir / "models.toml").write_text(
        f'[[models]]\nname = "{name}"\nbackend = "openai"\nurl = "{url}"\nfamily = "qwen3-vl"\n'
        f'box_convention = "rel1000"\ntimeout_s = {timeout_s}\nmax_retries = 0\n', encoding="utf-8")


async def _compare(url: str, model: str, *, start_only: bool = False):
    """Sign in as the admin and press Compare on the first case with ``model`` (task phase); the answer."""
    config = await fetch_config(url)
    async with new_client(url) as client:
        await sign_in(client, ADMIN)
        tab = GradioSession(client)
        shown = await tab.call(config.load_filling("compare-filter-dataset"), [])
        assert shown.ok, shown.error
        case = shown.data[-1]["value"]
        fn, trigger = config.event("compare-run", "click")
        return await tab.call(fn, [case, "phase", [model]], trigger)


async def _timed_get(client: httpx.AsyncClient, path: str) -> float:
    started = time.monotonic()
    response = await client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return time.monotonic() - started


def test_the_app_answers_other_sessions_while_a_compare_waits_on_a_hanging_model(tmp_path):
    site = seed_site(tmp_path, "", reviewers=1, annotators=0, extra_cases=0)
    hanging = FakeOpenAIServer(Behaviour(hang_s=60.0)).start()
    _write_registry(tmp_path, "hanging-model", hanging.url, timeout_s=8.0)
    server = start_server(tmp_path)

    async def scenario() -> tuple[object, list[float]]:
        compare = asyncio.create_task(_compare(server.url, "hanging-model"))
        while not hanging.completions:  # the model has the request: the Compare is waiting on it
            await asyncio.sleep(0.05)
            assert not compare.done(), compare.result()
        config = await fetch_config(server.url)
        timings = []
        async with new_client(server.url) as other:
            timings.append(await _timed_get(other, "/healthz"))
            await sign_in(other, site.reviewers[0])
            timings.append(await _timed_get(other, "/app/"))
            started = time.monotonic()
            shown = await GradioSession(other).call(config.load_filling("review-study"), [])
            assert shown.ok, shown.error
            timings.append(time.monotonic() - started)
        assert not compare.done(), "the Compare should still be waiting on the model"
        return await compare, timings

    try:
        answer, timings = asyncio.run(scenario())
    finally:
        server.stop()
        hanging.stop()
    assert max(timings) < RESPONSIVE_S, timings
    assert answer.ok, answer.error
    panels = answer.data[1]
    assert "timeout" in str(panels), panels
    database = Database.from_url(_url(tmp_path, ""))
    with database.session_scope() as session:
        errors = session.scalars(select(Prediction.error).join(Run)
                                 .where(Run.model.has(name="hanging-model"))).all()
    database.dispose()
    assert len(errors) == 1 and "timeout" in errors[0]


# --- the database going away for a moment -----------------------------------------------------------------


class TcpForwarder:
    """127.0.0.1:port -> target, one pair of pump threads per connection. ``stop`` closes the listener and
    every connection (the database is gone); ``start`` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> TcpForwarder:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass
            self.connections.clear()


@pytest.mark.postgres
def test_a_database_outage_shows_the_clear_message_and_a_retry_succeeds(tmp_path):
    url, drop = create_postgres_database()
    parsed = make_url(url)
    forwarder = TcpForwarder((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
    proxied = parsed.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
    slow = FakeOpenAIServer(Behaviour(reply="<answer> B </answer>", latency_s=2.0)).start()
    _write_registry(tmp_path, "slow-model", slow.url, timeout_s=30.0)
    try:
        site = seed_site(tmp_path, proxied, reviewers=1, annotators=0, extra_cases=0)
        server = start_server(tmp_path, proxied)
        try:
            _outage_and_retry(server.url, site, forwarder, slow, url)
        finally:
            server.stop()
    finally:
        slow.stop()
        forwarder.stop()
        drop()


def _outage_and_retry(url: str, site, forwarder: TcpForwarder, slow: FakeOpenAIServer, direct_url: str) -> None:
    async def during_compare():
        compare = asyncio.create_task(_compare(url, "slow-model"))
        while not slow.completions:  # the Compare waits on the model: the database goes away now
            await asyncio.sleep(0.02)
        forwarder.stop()
        return await compare

    outage = asyncio.run(during_compare())
    assert not outage.ok and OUTAGE_MESSAGE in (outage.error or ""), outage.error
    forwarder.start()
    again = asyncio.run(_compare(url, "slow-model"))
    assert again.ok, again.error
    database = Database.from_url(direct_url)
    with database.session_scope() as session:
        stored = session.scalars(select(Prediction).join(Run).where(Run.model.has(name="slow-model"))).all()
    assert [(p.error, p.phase) for p in stored] == [(None, "B")]
    # Backends terminated under the app (a database restart, a failover): the pool notices, no error.
    admin = create_engine(direct_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        killed = connection.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    admin.dispose()
    database.dispose()
    assert killed >= 1
    ledger = simulate(url, reviewer_names(1), [], 2.0)
    assert ledger.errors == [] and ledger.judgments


@pytest.mark.postgres
def test_a_request_while_the_database_is_away_gets_503_with_the_clear_message(tmp_path):
    url, drop = create_postgres_database()
    parsed = make_url(url)
    forwarder = TcpForwarder((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
    proxied = parsed.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
    try:
        site = seed_site(tmp_path, proxied, reviewers=1, annotators=0, extra_cases=0)
        server = start_server(tmp_path, proxied)
        try:
            asyncio.run(_request_while_away(server.url, site, forwarder))
        finally:
            server.stop()
    finally:
        forwarder.stop()
        drop()


async def _request_while_away(url: str, site, forwarder: TcpForwarder) -> None:
    config = await fetch_config(url)
    async with new_client(url) as reviewer:
        await sign_in(reviewer, site.reviewers[0])
        forwarder.stop()
        joined = await reviewer.post("/app/gradio_api/queue/join", json={
            "data": [], "fn_index": config.load_filling("review-study"), "session_hash": "outage"})
        assert joined.status_code == 503 and OUTAGE_MESSAGE in joined.json()["detail"]
        forwarder.start()
        shown = await GradioSession(reviewer).call(config.load_filling("review-study"), [])
        assert shown.ok, shown.error  # the session survived the outage: the same request now works

