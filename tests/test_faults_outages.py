"""Faults, the services around the app failing (processes killed mid-write are in tests/test_faults.py).

- An OpenAI-compatible backend that hangs past the timeout, closes every connection, or is killed mid-run:
  the run records the failure on each case it could not predict and finishes; while a Compare of a hanging
  model runs, other sessions and /healthz answer at once.
- PostgreSQL going away for a moment (the app reaches it through a TCP forwarder that the test stops and
  starts again; its backends are also terminated with pg_terminate_backend): the user gets the "database
  is not answering" message, and the same action succeeds once the database is back.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from db.schema import Case, Prediction, Run
from models.backends import ModelSpec, create_backend
from models.runner import run_predictions
from tests.browser import free_port
from tests.conftest import create_postgres_database
from tests.fake_openai_server import Behaviour, FakeOpenAIServer
from tests.load_harness import ADMIN, reviewer_names, seed_site, start_server
from tests.load_users import GradioSession, fetch_config, new_client, sign_in, simulate
from tests.review_app import load_demo

OUTAGE_MESSAGE = "The database is not answering right now"
RESPONSIVE_S = 3.0  # an answer "at once" on a 2-core machine shared with other test runs



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
    database = Database.from_url(f"sqlite:///{tmp_path / 'surgreview.db'}")
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
