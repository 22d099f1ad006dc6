"""Backup and restore on real SQLite and PostgreSQL: an installation moved SQLite -> PostgreSQL -> SQLite
keeps every row and frame file; the commands work from the CLI; a backup taken while someone writes is one
consistent state; damaged, edited, foreign or newer archives and non-empty targets are refused before anything
is written."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

import db.backup as backup_module
from app.cli_backup import backup_command, restore_command
from db.backup import ArchiveDamaged, RestoreRefused, backup, restore
from db.engine import Database
from db.frames import FrameStore
from db.migrate import current_revision, upgrade
from db.schema import Annotation, Judgment, User, UserRole
from db.users import actor, create_user
from review.judging import next_item
from tests.conftest import create_postgres_database
from tests.deployment_seed import PASSWORD, frame_files, seed_installation, snapshot


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A populated SQLite installation and its archive, shared by the module (tests only read them)."""
    folder = tmp_path_factory.mktemp("source")
    db = Database.from_url(f"sqlite:///{folder / 'source.db'}")
    upgrade(db.engine)
    frames = FrameStore(folder / "frames")
    seed_installation(db, frames)
    archive = folder / "source.zip"
    summary = backup(db.engine, frames.root, archive)
    yield db, frames.root, archive, summary
    db.dispose()


@pytest.fixture
def postgres_db():
    url, drop = create_postgres_database()
    db = Database.from_url(url)
    yield db
    db.dispose()
    drop()


def _sqlite(path: Path) -> Database:
    return Database.from_url(f"sqlite:///{path}")


def test_the_source_archive_lists_every_table_and_frame(source):
    db, root, archive, summary = source
    assert summary.rows["judgments"] == 3 and summary.rows["annotations"] == 3
    assert summary.frames == len(frame_files(root)) == 16 and not summary.missing_frames
    with zipfile.ZipFile(archive) as opened:
        manifest = json.loads(opened.read("manifest.json"))
        assert manifest["revision"] == current_revision(db.engine)
        names = [t["name"] for t in manifest["tables"]]
        assert names.index("users") < names.index("judgments") < names.index("output_ratings")
        assert sorted(opened.namelist()) == sorted([*manifest["members"], "manifest.json"])
        first = json.loads(opened.read("tables/judgments.jsonl").splitlines()[0])
        assert first["comment"] == "Calot – ✓ 日本" and first["created_at"].endswith("+00:00")
    assert not list(archive.parent.glob(".*.part"))  # the temporary file was renamed, not left behind


@pytest.mark.postgres
def test_sqlite_to_postgresql_to_sqlite_keeps_every_row_and_frame(source, postgres_db, tmp_path):
    db, root, archive, _ = source
    expected_rows, expected_files = snapshot(db.engine), frame_files(root)

    summary = restore(postgres_db.engine, tmp_path / "pg-frames", archive)
    assert summary.frames_written == 16 and summary.rows["judgments"] == 3
    assert snapshot(postgres_db.engine) == expected_rows
    assert frame_files(tmp_path / "pg-frames") == expected_files
    with postgres_db.sessions() as session:  # sequences moved past the restored ids (rolled back after)
        new = create_user(session, "after-restore", password=PASSWORD, roles=["reviewer"])
        assert new.id == len(expected_rows["users"]) + 1
        assert next_item(session, actor(session, "rev1"), 1).progress.done == 2  # the app reads it as before
        session.rollback()

    again = tmp_path / "from-postgres.zip"
    backup(postgres_db.engine, tmp_path / "pg-frames", again)
    back = _sqlite(tmp_path / "back.db")
    restore(back.engine, tmp_path / "back-frames", again)
    assert snapshot(back.engine) == expected_rows
    assert frame_files(tmp_path / "back-frames") == expected_files
    back.dispose()


def test_the_cli_backs_up_and_restores_through_the_settings(source, tmp_path, monkeypatch):
    db, root, _, _ = source
    cli = typer.Typer()
    cli.command("backup")(backup_command)
    cli.command("restore")(restore_command)
    runner = CliRunner()
    monkeypatch.setenv("SURGREVIEW_DATABASE_URL", str(db.engine.url))
    monkeypatch.setenv("SURGREVIEW_FRAME_STORE_DIR", str(root))
    made = runner.invoke(cli, ["backup", str(tmp_path / "cli.zip")])
    assert made.exit_code == 0, made.output
    assert "16 frame files" in made.output

    monkeypatch.setenv("SURGREVIEW_DATABASE_URL", f"sqlite:///{tmp_path / 'restored.db'}")
    monkeypatch.setenv("SURGREVIEW_FRAME_STORE_DIR", str(tmp_path / "restored-frames"))
    done = runner.invoke(cli, ["restore", str(tmp_path / "cli.zip")])
    assert done.exit_code == 0, done.output
    assert "16 frame files written" in done.output
    refused = runner.invoke(cli, ["restore", str(tmp_path / "cli.zip")])  # now it is not empty
    assert refused.exit_code == 2 and "not empty" in refused.output
    restored = _sqlite(tmp_path / "restored.db")
    assert snapshot(restored.engine) == snapshot(db.engine)
    restored.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_backup_taken_while_someone_writes_is_one_consistent_state(kind, tmp_path, monkeypatch, request):
    db = request.getfixturevalue("postgres_db") if kind == "postgres" else _sqlite(tmp_path / "live.db")
    upgrade(db.engine)
    with db.session_scope() as session:
        create_user(session, "before", password=PASSWORD, roles=["reviewer"])
    dump_table = backup_module._dump_table

    def write_between_tables(connection, table, entry, archive):
        result = dump_table(connection, table, entry, archive)
        if table.name == "users":  # a user and their role committed after users were read, before user_roles
            with db.session_scope() as session:
                create_user(session, "during", password=PASSWORD, roles=["admin"])
        return result

    monkeypatch.setattr(backup_module, "_dump_table", write_between_tables)
    summary = backup(db.engine, tmp_path / "frames", tmp_path / "live.zip")
    assert summary.rows["users"] == 1 and summary.rows["user_roles"] == 1  # the snapshot, not a mixture
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(UserRole)) == 2
    target = _sqlite(tmp_path / "target.db")
    restore(target.engine, tmp_path / "target-frames", tmp_path / "live.zip")
    with target.session_scope() as session:
        assert session.scalars(select(User.username)).all() == ["before"]
    target.dispose()
    if kind == "sqlite":
        db.dispose()


def test_a_database_with_rows_is_refused_and_left_as_it_was(source, tmp_path):
    _, _, archive, _ = source
    target = _sqlite(tmp_path / "busy.db")
    upgrade(target.engine)
    with target.session_scope() as session:
        create_user(session, "someone", password=PASSWORD, roles=["admin"])
    before = snapshot(target.engine)
    with pytest.raises(RestoreRefused, match="not empty .*users has 1 rows"):
        restore(target.engine, tmp_path / "frames", archive)
    assert snapshot(target.engine) == before
    assert not (tmp_path / "frames").exists()
    target.dispose()


def test_an_empty_database_at_head_is_accepted(source, tmp_path):
    db, _, archive, _ = source
    target = _sqlite(tmp_path / "migrated.db")
    upgrade(target.engine)  # as `surgreview serve` leaves a new database: migrated, no rows
    restore(target.engine, tmp_path / "frames", archive)
    assert snapshot(target.engine) == snapshot(db.engine)
    target.dispose()


def _rewrite(archive: Path, out: Path, change) -> Path:
    """A copy of ``archive`` with ``change(name, data) -> data | None`` applied to each member (None drops it)
    and the zip rebuilt, so every zip-level check (CRC, sizes) passes and only our own checks can notice."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = change(info.filename, source.read(info.filename))
            if data is not None:
                target.writestr(info, data)
    return out


def _manifest_edit(edit):
    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        edit(manifest)
        return json.dumps(manifest).encode()
    return change


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _first_frame(archive: Path) -> str:
    with zipfile.ZipFile(archive) as opened:
        return next(n for n in opened.namelist() if n.startswith("frames/"))


def _frame_with_matching_manifest(archive: Path, out: Path) -> Path:
    """Another image under a frame's name, with the manifest's sha256 updated too: only the check that a frame
    file hashes to its own name can notice."""
    name = _first_frame(archive)
    other = b"\x89PNG not the frame"

    def change(member: str, data: bytes) -> bytes:
        if member == name:
            return other
        if member == "manifest.json":
            manifest = json.loads(data)
            manifest["members"][name] = {"sha256": hashlib.sha256(other).hexdigest(), "size": len(other)}
            return json.dumps(manifest).encode()
        return data
    return _rewrite(archive, out, change)


# damage -> (make the damaged copy, what the refusal says)
DAMAGE = {
    "truncated": (lambda archive, out: out.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
                  and out,
                  "not a readable backup archive"),
    "not a zip": (lambda archive, out: out.write_bytes(b"PK\x03\x04 but nothing else") and out,
                  "not a readable backup archive"),
    # A flipped byte inside a member: the zip's CRC catches it when the member is read.
    "bit rot": (lambda archive, out: out.write_bytes(_flip(archive.read_bytes(), 200)) and out,
                "cannot be read from the archive .*Bad CRC"),
    "edited row": (lambda archive, out: _rewrite(archive, out, lambda n, d: d.replace(b"rev1", b"evil")
                                                 if n == "tables/users.jsonl" else d),
                   "users.jsonl is damaged: its sha256"),
    "edited frame": (lambda archive, out: _rewrite(archive, out, lambda n, d: _flip(d, len(d) // 2)
                                                   if n == _first_frame(archive) else d),
                     r"frames/.*\.png is damaged"),
    "frame under a wrong name": (_frame_with_matching_manifest, "does not hold the image its name promises"),
    "dropped member": (lambda archive, out: _rewrite(archive, out, lambda n, d: None
                                                     if n == "tables/judgments.jsonl" else d),
                       r"do not match its manifest \(missing: \['tables/judgments.jsonl'\]"),
    "extra member": (lambda archive, out: _rewrite(archive, out, lambda n, d: d) and _append(out),
                     r"unlisted: \['frames/\.\./\.\./etc/cron.d/evil'\]"),
    "no manifest": (lambda archive, out: _rewrite(archive, out,
                                                  lambda n, d: None if n == "manifest.json" else d),
                    "has no manifest.json"),
    "row count": (lambda archive, out: _rewrite(archive, out, _manifest_edit(
        lambda m: next(t for t in m["tables"] if t["name"] == "users").update(rows=99))),
        "users.jsonl has 6 rows; the manifest says 99"),
    "foreign format": (lambda archive, out: _rewrite(archive, out,
                                                     _manifest_edit(lambda m: m.update(format="x"))),
                       "not that of a SurgReview backup"),
    "newer format": (lambda archive, out: _rewrite(archive, out, _manifest_edit(
        lambda m: m.update(format_version=99))), "backup format 99; .* Restore it with a newer SurgReview"),
}


def _append(out: Path) -> Path:
    with zipfile.ZipFile(out, "a") as opened:
        opened.writestr("frames/../../etc/cron.d/evil", b"* * * * * root true")
    return out


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_archive_is_refused_before_anything_is_written(source, tmp_path, damage):
    _, _, archive, _ = source
    make, says = DAMAGE[damage]
    broken = make(archive, tmp_path / "broken.zip")
    target = _sqlite(tmp_path / "target.db")
    with pytest.raises(ArchiveDamaged, match=says):
        restore(target.engine, tmp_path / "frames", broken)
    assert current_revision(target.engine) is None  # not even migrated
    assert not (tmp_path / "frames").exists()
    target.dispose()


def test_an_archive_from_a_newer_schema_is_refused(source, tmp_path):
    _, _, archive, _ = source
    newer = _rewrite(archive, tmp_path / "newer.zip",
                     _manifest_edit(lambda m: m.update(revision="9999_future")))
    target = _sqlite(tmp_path / "target.db")
    with pytest.raises(RestoreRefused, match="newer version"):
        restore(target.engine, tmp_path / "frames", newer)
    assert current_revision(target.engine) is None and not (tmp_path / "frames").exists()
    target.dispose()


def test_a_frame_file_missing_from_the_store_is_reported_not_fatal(tmp_path):
    db = _sqlite(tmp_path / "db.db")
    upgrade(db.engine)
    frames = FrameStore(tmp_path / "frames")
    seed_installation(db, frames, judge=False)
    lost = min(frames.root.rglob("*.png"))
    lost.unlink()
    summary = backup(db.engine, frames.root, tmp_path / "partial.zip")
    assert summary.missing_frames == [lost.relative_to(frames.root).as_posix()] and summary.frames == 15
    assert "1 frame files are missing" in summary.render()
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Judgment)) == 0
        assert session.scalar(select(func.count()).select_from(Annotation)) == 0
    db.dispose()
