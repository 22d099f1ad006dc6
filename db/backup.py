"""Backup and restore of a whole installation, database plus frame store, independent of the database kind.

``backup`` reads every table in one read-only transaction (REPEATABLE READ on PostgreSQL, one WAL snapshot on
SQLite), so the archive is consistent while the app keeps running, and writes it atomically (temporary file,
fsync, rename). ``restore`` verifies the whole archive before writing anything, refuses a database that holds
rows, migrates the empty database to the archive's schema revision, writes the frame files and inserts every
table in one transaction, then migrates to this version's head. Restoring a SQLite backup into PostgreSQL
(or back) moves an installation between the two. The format is described in db/backup_format.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, Table, func, null, select, text, update

from db.backup_format import (
    CHUNK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SQL_NULL,
    Archive,
    ArchiveDamaged,
    BackupError,
    HashingWriter,
    RestoreRefused,
    decode_value,
    dumps_row,
    encode_value,
    open_archive,
    table_entry,
)
from db.files import atomic_write_bytes
from db.migrate import alembic_config, current_revision, downgrade, upgrade

__all__ = ["ArchiveDamaged", "BackupError", "BackupSummary", "RestoreRefused", "RestoreSummary", "backup",
           "restore", "user_tables"]
VERSION_TABLE = "alembic_version"
BATCH = 1000


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    revision: str
    rows: dict[str, int]
    frames: int
    size_bytes: int
    seconds: float
    missing_frames: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [(f"backup {self.path}: {sum(self.rows.values()):,} rows in {len(self.rows)} tables, "
                  f"{self.frames:,} frame files, {self.size_bytes:,} bytes, schema {self.revision}, "
                  f"{self.seconds:.1f} s")]
        if self.missing_frames:
            lines.append(f"WARNING: {len(self.missing_frames)} frame files are missing or damaged in the "
                         "store and are not in the archive (listed in its manifest), e.g. "
                         f"{self.missing_frames[0]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class RestoreSummary:
    revision: str
    rows: dict[str, int]
    frames_written: int
    frames_present: int
    seconds: float

    def render(self) -> str:
        return (f"restored {sum(self.rows.values()):,} rows in {len(self.rows)} tables "
                f"(schema {self.revision}), "
                f"{self.frames_written:,} frame files written, {self.frames_present:,} already present, "
                f"{self.seconds:.1f} s")


def user_tables(connection: Connection) -> list[Table]:
    """The database's own tables (reflected, not this code's models) in foreign-key order."""
    metadata = MetaData()
    metadata.reflect(bind=connection)
    return [t for t in metadata.sorted_tables if t.name != VERSION_TABLE]


# --- backup -------------------------------------------------------------------------------------------

def backup(engine: Engine, frame_root: Path, out: Path) -> BackupSummary:
    """Write the database of ``engine`` and the frame files it refers to (under ``frame_root``) to the zip
    archive ``out``, atomically. Frame files missing from the store are listed, not fatal."""
    started = time.perf_counter()
    out = Path(out)
    with _snapshot(engine) as connection, _atomic_file(out) as handle:
        revision = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar() \
            if engine.dialect.has_table(connection, VERSION_TABLE) else None
        if revision is None:
            raise BackupError("The database has no SurgReview schema yet (no migration applied); "
                              "nothing to back up.")
        with zipfile.ZipFile(handle, "w", allowZip64=True) as archive:
            members: dict[str, dict[str, Any]] = {}
            tables = []
            for table in user_tables(connection):
                entry = table_entry(table)
                entry["rows"], members[entry["member"]] = _dump_table(connection, table, entry, archive)
                tables.append(entry)
            frames = _dump_frames(connection, Path(frame_root), archive, members)
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "revision": revision,
                        "created_at": dt.datetime.now(dt.UTC).isoformat(), "dialect": engine.dialect.name,
                        "tables": tables, "frames": frames, "members": members}
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
    return BackupSummary(out, revision, {t["name"]: t["rows"] for t in tables}, frames["count"],
                         out.stat().st_size, time.perf_counter() - started, frames["missing"])


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction that sees one consistent state of the whole database."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        else:  # a long reader must not hold SQLite's write lock (should transactions begin IMMEDIATE)
            connection = connection.execution_options(sqlite_begin="DEFERRED")
        with connection.begin() as transaction:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield connection
            transaction.rollback()


@contextmanager
def _atomic_file(path: Path) -> Iterator[Any]:
    """A temporary file beside ``path`` renamed over it once complete and on disk; removed on any error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump_table(connection: Connection, table: Table, entry: dict[str, Any],
                archive: zipfile.ZipFile) -> tuple[int, dict[str, Any]]:
    kinds = {c["name"]: c["kind"] for c in entry["columns"]}
    # Nullable JSON columns: SQL NULL and the JSON document null read back alike, so ask the database.
    null_checks = [c for c in table.columns if kinds[c.name] == "json" and c.nullable]
    order = list(table.primary_key.columns) or list(table.columns)
    flags = (c.is_(None).label(f"null:{c.name}") for c in null_checks)
    query = select(*table.columns, *flags).order_by(*order)
    count = 0
    with archive.open(zipfile.ZipInfo(entry["member"], _zip_time()), "w", force_zip64=True) as raw:
        member = HashingWriter(raw)
        streamed = connection.execution_options(stream_results=True, yield_per=BATCH)
        for row in streamed.execute(query).mappings():
            record = {name: encode_value(kind, row[name]) for name, kind in kinds.items()}
            sql_null = [c.name for c in null_checks if row[f"null:{c.name}"]]
            if sql_null:
                record[SQL_NULL] = sql_null
            member.write(dumps_row(record))
            count += 1
    return count, member.entry()


def _dump_frames(connection: Connection, root: Path, archive: zipfile.ZipFile,
                 members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Copy the files of the snapshot's frame rows (thumbnails are derived and left out), checking each
    file's content against its hash; files missing or damaged in the store are listed."""
    if not connection.dialect.has_table(connection, "frames"):
        return {"count": 0, "bytes": 0, "missing": []}
    frames = connection.execute(text("SELECT sha256, path FROM frames ORDER BY id")).all()
    count, size, missing = 0, 0, []
    for sha256, relative in frames:
        name = f"frames/{relative}"
        try:
            entry = _copy_frame(root / relative, name, archive)
        except FileNotFoundError:
            missing.append(relative)
            continue
        if entry is None or entry["sha256"] != sha256:
            missing.append(relative)
            continue
        members[name] = entry
        count, size = count + 1, size + entry["size"]
    return {"count": count, "bytes": size, "missing": missing}


def _copy_frame(path: Path, name: str, archive: zipfile.ZipFile) -> dict[str, Any] | None:
    """Store one frame file uncompressed (images are compressed already); None, and nothing stored, when
    its bytes do not hash to its name."""
    with path.open("rb") as source:
        data = source.read()
    digest = hashlib.sha256(data).hexdigest()
    if not path.name.startswith(digest):
        return None
    info = zipfile.ZipInfo(name, _zip_time())
    info.compress_type = zipfile.ZIP_STORED
    archive.writestr(info, data)
    return {"sha256": digest, "size": len(data)}


def _zip_time() -> tuple[int, int, int, int, int, int]:
    return time.localtime()[:6]


# --- restore ------------------------------------------------------------------------------------------

def restore(engine: Engine, frame_root: Path, archive_path: Path) -> RestoreSummary:
    """Restore the archive ``archive_path`` into the empty database of ``engine`` and the frame store at
    ``frame_root``. ArchiveDamaged when the archive is not intact, RestoreRefused when the database holds
    rows or the archive's schema is newer than this code; in both cases nothing is written."""
    started = time.perf_counter()
    archive = open_archive(Path(archive_path))
    with archive.zip:
        revision = archive.manifest["revision"]
        _check_revision_known(engine, revision)
        _check_empty(engine)
        _migrate_to(engine, revision)
        written, present, new_files = _restore_frames(archive, Path(frame_root))
        try:
            rows = _insert_tables(engine, archive)
        except BaseException:
            for path in new_files:
                path.unlink(missing_ok=True)
            raise
    upgrade(engine)  # the archive may predate this version's schema
    return RestoreSummary(revision, rows, written, present, time.perf_counter() - started)


def _check_revision_known(engine: Engine, revision: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    try:
        known = script.get_revision(revision) is not None
    except (CommandError, RevisionError):
        known = False
    if not known:
        raise RestoreRefused(f"The archive's schema revision {revision!r} is unknown to this SurgReview: "
                             "it was made by a newer version. Install that version (or newer) to restore it.")


def _check_empty(engine: Engine) -> None:
    with engine.connect() as connection:
        for table in user_tables(connection):
            rows = connection.execute(select(func.count()).select_from(table)).scalar()
            if rows:
                raise RestoreRefused(f"The target database is not empty (table {table.name} has {rows:,} "
                                     "rows). Restore only into a new, empty database.")


def _migrate_to(engine: Engine, revision: str) -> None:
    """Bring the empty database to ``revision``: up from nothing or older, down from newer (no rows lost)."""
    current = current_revision(engine)
    if current == revision:
        return
    if current is not None:
        script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
        if revision in {r.revision for r in script.iterate_revisions(current, "base")}:
            downgrade(engine, revision)
            return
    upgrade(engine, revision)


def _restore_frames(archive: Archive, root: Path) -> tuple[int, int, list[Path]]:
    """Write the archive's frame files into the store (verified again as they are read); files already
    there with the right content are kept. Returns (written, present, paths written)."""
    written, present, new_files = 0, 0, []
    try:
        for name in archive.frame_members():
            path = root / name.removeprefix("frames/")
            expected = archive.manifest["members"][name]["sha256"]
            if path.exists() and _file_sha256(path) == expected:
                present += 1
                continue
            data = archive.zip.read(name)
            if hashlib.sha256(data).hexdigest() != expected:
                raise ArchiveDamaged(f"{name} changed while it was being restored.")
            atomic_write_bytes(path, data, durable=False)
            new_files.append(path)
            written += 1
        if new_files:
            os.sync()  # once for the batch, before any row that refers to them is committed
    except BaseException:
        for path in new_files:
            path.unlink(missing_ok=True)
        raise
    return written, present, new_files


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _insert_tables(engine: Engine, archive: Archive) -> dict[str, int]:
    """Insert every table of the archive in one transaction, in the manifest's foreign-key order."""
    rows = {}
    with engine.begin() as connection:
        targets = {t.name: t for t in user_tables(connection)}
        for entry in archive.tables():
            table = targets.get(entry["name"])
            columns = {c["name"] for c in entry["columns"]}
            if table is None or set(table.columns.keys()) != columns:
                raise RestoreRefused(f"Table {entry['name']} of the archive does not match the database's at "
                                     f"revision {archive.manifest['revision']}; the archive was edited or is "
                                     "from a different product.")
            rows[entry["name"]] = _insert_table(connection, table, entry, archive)
        if connection.dialect.name == "postgresql":
            _reset_sequences(connection, targets.values())
    return rows


def _insert_table(connection: Connection, table: Table, entry: dict[str, Any], archive: Archive) -> int:
    kinds = {c["name"]: c["kind"] for c in entry["columns"]}
    zoned = {c.name: getattr(c.type, "timezone", True) for c in table.columns}
    # A column referring to its own table (an annotation's parent) may point at a row not inserted yet:
    # such values are set once the whole table is in.
    self_refs = [fk.parent.name for fk in table.foreign_keys if fk.column.table.name == table.name]
    pk = [c.name for c in table.primary_key.columns]
    seen: set[Any] = set()
    later: list[tuple[dict[str, Any], dict[str, Any]]] = []
    sql_nulls: list[tuple[dict[str, Any], list[str]]] = []
    batch, count = [], 0
    for record in archive.rows(entry):
        row = {name: decode_value(kind, record.get(name), timezone=zoned[name])
               for name, kind in kinds.items()}
        key = {name: row[name] for name in pk}
        if self_refs:
            forward = {c: row[c] for c in self_refs if row[c] is not None and row[c] not in seen}
            if forward:
                later.append((key, forward))
                row.update(dict.fromkeys(forward))
            seen.add(row[pk[0]] if len(pk) == 1 else tuple(key.values()))
        if record.get(SQL_NULL):
            sql_nulls.append((key, record[SQL_NULL]))
        batch.append(row)
        if len(batch) >= BATCH:
            count += _flush(connection, table, batch)
    count += _flush(connection, table, batch)
    for key, values in later + [(key, {c: None for c in cols}) for key, cols in sql_nulls]:
        _update(connection, table, key, values)
    return count


def _flush(connection: Connection, table: Table, batch: list[dict[str, Any]]) -> int:
    if not batch:
        return 0
    connection.execute(table.insert(), batch)
    done = len(batch)
    batch.clear()
    return done


def _update(connection: Connection, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    where = [table.c[name] == value for name, value in key.items()]
    # null() is SQL NULL even for a JSON column, where None would store the JSON document null.
    changes = {c: null() if v is None else v for c, v in values.items()}
    connection.execute(update(table).where(*where).values(changes))


def _reset_sequences(connection: Connection, tables: Any) -> None:
    """Point each serial primary key's sequence past the restored ids, so new rows do not collide."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1:
            continue
        sequence = connection.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                      {"t": table.name, "c": pk[0].name}).scalar()
        if sequence:
            highest = f'SELECT MAX("{pk[0].name}") FROM "{table.name}"'
            connection.execute(text(f"SELECT setval(:s, COALESCE(({highest}), 0) + 1, false)"),
                               {"s": sequence})
