"""The `surgreview` command as a user runs it: a data folder from the environment, summaries on stdout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotation.demo.users import DEMO_USERS
from app.cli import cli
from db.engine import Database
from db.schema import Case, Label, Prediction, User
from db.users import authenticate, list_users
from tests.conftest import make_image_bytes
from tests.web_helpers import login

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    return tmp_path / "data"


def _count(data_dir: Path, model) -> int:  # noqa: ANN001
    database = Database.from_url(f"sqlite:///{data_dir / 'surgreview.db'}")
    with database.session_scope() as session:
        count = session.scalar(select(func.count()).select_from(model))
    database.dispose()
    return count


def test_db_upgrade_and_current(data_dir):
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "current"]).output.strip() == "empty (no migrations applied)"
    head = sorted(p.name[:4] for p in (ROOT / "db" / "migrations" / "versions").glob("0*.py"))[-1]
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0 and f"revision {head}" in result.output
    assert runner.invoke(cli, ["db", "current"]).output.strip() == head


def test_import_frames_prints_the_summary_and_exits_3_on_rejections(data_dir, tmp_path):
    folder = tmp_path / "in" / "video07"
    folder.mkdir(parents=True)
    (folder / "frame_000250.png").write_bytes(make_image_bytes(seed=3))
    (folder / "frame_000500.png").write_bytes(b"")
    result = CliRunner().invoke(cli, ["import", "frames", str(tmp_path / "in"), "--dataset", "cholec80",
                                      "--split", "test", "--tag", "night"])
    assert result.exit_code == 3, result.output
    assert "1 imported, 0 skipped as duplicate, 1 rejected" in result.output
    assert "video07/frame_000500.png: the file is empty" in result.output
    again = CliRunner().invoke(cli, ["import", "frames", str(tmp_path / "in"), "--dataset", "cholec80"])
    assert "0 imported, 1 skipped as duplicate" in again.output
    assert _count(data_dir, Case) == 1


def test_a_bad_split_is_a_clear_error(data_dir, tmp_path):
    result = CliRunner().invoke(cli, ["import", "frames", str(tmp_path), "--dataset", "x", "--split", "holdout"])
    assert result.exit_code != 0
    assert "split must be one of train, val, test" in str(result.exception)


def test_demo_load_is_idempotent(data_dir):
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "load"])
    assert first.exit_code == 0, first.output
    counts = (_count(data_dir, Case), _count(data_dir, Label), _count(data_dir, Prediction), _count(data_dir, User))
    assert counts == (16, 16, 96, 8)
    second = runner.invoke(cli, ["demo", "load"])
    assert second.exit_code == 0 and "0 imported" in second.output
    assert (_count(data_dir, Case), _count(data_dir, Label), _count(data_dir, Prediction),
            _count(data_dir, User)) == counts


def test_demo_accounts_share_one_kept_password(data_dir):
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "load"]).output
    credentials = data_dir / "demo-credentials.txt"
    password = tomllib.loads(credentials.read_text())["password"]
    assert credentials.stat().st_mode & 0o777 == 0o600 and len(password) >= 16
    assert f"Log in at http://127.0.0.1:7860/ as admin / {password}" in first
    assert "surgeon1 (reviewer)" in first and "chief (approver)" in first and "resident1 (resident)" in first
    assert f"as admin / {password}" in runner.invoke(cli, ["demo", "load"]).output
    database = Database.from_url(f"sqlite:///{data_dir / 'surgreview.db'}")
    with database.session_scope() as session:
        assert authenticate(session, "chief", password).role_names == {"approver"}
        assert {u.username: u.role_names for u in list_users(session)} == {
            name: set(roles) for name, roles in DEMO_USERS.items()}
    database.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_with_the_demo_pack_answers_on_loopback(data_dir):
    """The README's first command, minus the install: the app starts, migrates, loads the demo and serves."""
    port = _free_port()
    env = {**os.environ, "SURGREVIEW_DATA_DIR": str(data_dir)}
    server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--demo", "--port", str(port)], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up in 120 s"
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/app/"):  # nothing but the sign-in page without a session
            refused = httpx.get(base + path, headers={"accept": "text/html"}, timeout=10)
            assert refused.status_code == 303 and refused.headers["location"].startswith("/login?next=")
        password = tomllib.loads((data_dir / "demo-credentials.txt").read_text())["password"]
        with httpx.Client(base_url=base, timeout=10) as browser:
            assert login(browser, "surgeon1", password).headers["location"] == "/app/"
            page = browser.get("/app/")
            assert page.status_code == 200 and "gradio" in page.text.lower()
        assert _count(data_dir, Case) == 16
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_demo_pack_is_parsed_on_load(data_dir):
    """Every demo output is parsed at once: phases, boxes in canonical pixels, warnings where planted."""
    assert CliRunner().invoke(cli, ["demo", "load"]).exit_code == 0
    database = Database.from_url(f"sqlite:///{data_dir / 'surgreview.db'}")
    with database.session_scope() as session:
        predictions = session.scalars(select(Prediction)).all()
        assert all(p.parsed is not None for p in predictions)
        gozone = [p for p in predictions if p.run.task == "gozone"]
        assert all(p.parsed["boxes"] for p in gozone)
        assert all(0 <= v <= 854 for p in gozone for b in p.parsed["boxes"] for v in b["box"][::2])
        surgo = [p for p in gozone if p.run.model.name == "demo-surgo-r1"]
        assert all(p.phase in "ABCD" and set(p.parsed["rationale"]) == {"location", "exposure", "next_action",
                                                                       "critical_risk"} for p in surgo)
        assert any("unclosed <think>" in w for p in predictions for w in p.parsed["warnings"])
    database.dispose()
