"""`surgreview users ...` as an admin runs it: add, list, set roles, set a password, disable."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from db.engine import Database
from db.schema import ROLES, AuditEvent
from db.users import authenticate


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    return tmp_path / "data"


def _run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["users", *args], input=input)


def _authenticates(data_dir: Path, username: str, password: str) -> bool:
    database = Database.from_url(f"sqlite:///{data_dir / 'surgreview.db'}")
    with database.session_scope() as session:
        ok = authenticate(session, username, password) is not None
    database.dispose()
    return ok


def test_add_list_set_roles_and_disable(data_dir):
    added = _run("add", "Alice", "--role", "reviewer", "--role", "educator", "--password-stdin",
                 input="alice's password\n")
    assert added.exit_code == 0 and "added alice (educator, reviewer)" in added.output
    assert _authenticates(data_dir, "alice", "alice's password")
    assert _run("set-roles", "alice", "--role", "approver").output.strip() == "alice: approver"
    listed = _run("list").output.split()
    assert listed == ["alice", "approver", "active", "local"]
    assert _run("disable", "ALICE").exit_code == 0
    assert _run("list").output.split()[2] == "disabled"
    assert not _authenticates(data_dir, "alice", "alice's password")
    database = Database.from_url(f"sqlite:///{data_dir / 'surgreview.db'}")
    with database.session_scope() as session:
        labels = {e.actor_label for e in session.query(AuditEvent).filter(AuditEvent.action.like("user.%"))}
    database.dispose()
    assert len(labels) == 1 and labels.pop().startswith("cli:")


def test_the_password_prompt_asks_twice(data_dir):
    result = _run("add", "bob", "--role", "resident", input="first one!\nsecond one\nbob's password\nbob's password\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower()
    assert _authenticates(data_dir, "bob", "bob's password")
    changed = _run("set-password", "bob", input="a new password\na new password\n")
    assert changed.exit_code == 0 and _authenticates(data_dir, "bob", "a new password")


def test_mistakes_are_clear_errors(data_dir):
    _run("add", "carol", "--password-stdin", input="carol's password\n")
    duplicate = _run("add", "ＣＡＲＯＬ", "--password-stdin", input="another password\n")
    assert duplicate.exit_code == 1 and "taken" in duplicate.output
    unknown = _run("set-roles", "carol", "--role", "superuser")
    assert unknown.exit_code == 1 and "Unknown role superuser" in unknown.output
    assert _run("disable", "nobody").exit_code == 1
    short = _run("add", "dave", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 8" in short.output


def test_the_help_lists_every_role():
    help_text = " ".join(CliRunner().invoke(cli, ["users", "add", "--help"]).output.split())
    assert all(role in help_text for role in ROLES)
