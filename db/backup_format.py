"""The backup archive's format: a zip with a manifest, one JSON-lines file per table and the frame files.

Layout::

    tables/<table>.jsonl   one JSON object per row, in primary-key order
    frames/ab/abcdef....png  the frame store's files (content-addressed, as in the store)
    manifest.json          written last: format, schema revision, tables (columns, kinds, rows),
                           members (sha256, size)

Values keep their types through JSON by the column's kind: datetimes as ISO 8601 in UTC, JSON columns as the
document itself, bytes as base64, decimals and UUIDs as strings. A JSON column holding SQL NULL (not the JSON
document ``null``) is listed under the row's ``"$sql_null"`` key, because the app queries ``IS NULL`` on some.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import re
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import JSON, Date, DateTime, LargeBinary, Numeric, Table, Time, Uuid

from db.errors import DomainError

FORMAT = "surgreview-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQL_NULL = "$sql_null"
CHUNK = 1024 * 1024
FRAME_MEMBER = re.compile(r"^frames/([0-9a-f]{2})/([0-9a-f]{64})\.[a-z0-9]{1,5}$")
TABLE_MEMBER = re.compile(r"^tables/[A-Za-z0-9_]+\.jsonl$")


class BackupError(DomainError):
    """A backup or restore could not be done; the message says why and what to do."""


class ArchiveDamaged(BackupError):
    """The archive is not a complete, intact SurgReview backup (truncated, corrupt, edited or foreign)."""


class RestoreRefused(BackupError):
    """The archive is intact but cannot be restored here (target not empty, newer schema)."""


def column_kind(column_type: Any) -> str:
    """How a column's values travel through JSON: datetime, date, time, json, bytes, decimal, uuid, plain."""
    for kind, types in (("datetime", DateTime), ("date", Date), ("time", Time), ("json", JSON),
                        ("bytes", LargeBinary), ("uuid", Uuid)):
        if isinstance(column_type, types):
            return kind
    if isinstance(column_type, Numeric) and column_type.asdecimal:
        return "decimal"
    return "plain"


def encode_value(kind: str, value: Any) -> Any:
    """``value`` read from a column of ``kind`` as a JSON value; naive datetimes are UTC (SQLite drops it)."""
    if value is None or kind in ("plain", "json"):
        return value
    if kind == "datetime":
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return value.isoformat()
    if kind in ("date", "time"):
        return value.isoformat()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # decimal, uuid


def decode_value(kind: str, value: Any, *, timezone: bool = True) -> Any:
    """The Python value to insert into a column of ``kind`` for JSON ``value`` (inverse of encode_value)."""
    if value is None or kind in ("plain", "json"):
        return value
    if kind == "datetime":
        parsed = dt.datetime.fromisoformat(value)
        return parsed if timezone else parsed.astimezone(dt.UTC).replace(tzinfo=None)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "time":
        return dt.time.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "uuid":
        return uuid.UUID(value)
    return decimal.Decimal(value)


def table_entry(table: Table) -> dict[str, Any]:
    """The manifest's description of ``table``: member name, columns with kinds, primary key."""
    return {"name": table.name, "member": f"tables/{table.name}.jsonl",
            "columns": [{"name": c.name, "kind": column_kind(c.type)} for c in table.columns],
            "primary_key": [c.name for c in table.primary_key.columns]}


def dumps_row(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class HashingWriter:
    """Wraps a zip member opened for writing: counts and hashes what goes through."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def entry(self) -> dict[str, Any]:
        return {"sha256": self.digest.hexdigest(), "size": self.size}


@dataclass(frozen=True)
class Archive:
    """An opened, verified archive: its zip and its manifest."""

    zip: zipfile.ZipFile
    manifest: dict[str, Any]

    def tables(self) -> list[dict[str, Any]]:
        return self.manifest["tables"]

    def frame_members(self) -> list[str]:
        return [name for name in self.manifest["members"] if name.startswith("frames/")]

    def rows(self, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The rows of one table as JSON objects, streamed from its member."""
        with self.zip.open(entry["member"]) as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ArchiveDamaged(f"{entry['member']} line {number} is not JSON ({exc}).") from exc


def open_archive(path: Path) -> Archive:
    """Open ``path`` and check it end to end before anything is written: a readable zip, a manifest of a
    known format, exactly the members it lists, each with its size and sha256, frame files named by their
    own sha256 and row counts as stated. Raises ArchiveDamaged saying what is wrong; the caller closes
    ``archive.zip``."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArchiveDamaged(f"There is no file {path}.") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveDamaged(f"{path} is not a readable backup archive ({exc}); it may be truncated."
                             ) from exc
    try:
        manifest = _manifest(archive)
        _check_members(archive, manifest)
    except BaseException:
        archive.close()
        raise
    return Archive(archive, manifest)


def _manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise ArchiveDamaged(f"The archive has no {MANIFEST}: it is not a SurgReview backup.") from None
    except (ValueError, zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ArchiveDamaged(f"The archive's {MANIFEST} is unreadable ({exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveDamaged(f"The archive's {MANIFEST} is not that of a SurgReview backup.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArchiveDamaged(f"The archive has backup format {version!r}; this SurgReview reads format "
                             f"{FORMAT_VERSION} and older. Restore it with a newer SurgReview.")
    for key in ("revision", "tables", "members"):
        if key not in manifest:
            raise ArchiveDamaged(f"The archive's {MANIFEST} lacks {key!r}.")
    return manifest


def _check_members(archive: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    listed = set(manifest["members"])
    present = set(archive.namelist()) - {MANIFEST}
    if present != listed:
        extra, missing = sorted(present - listed), sorted(listed - present)
        raise ArchiveDamaged(f"The archive's members do not match its manifest (missing: {missing[:5]}, "
                             f"unlisted: {extra[:5]}).")
    rows = {entry["member"]: entry["rows"] for entry in manifest["tables"]}
    for name, expected in sorted(manifest["members"].items()):
        frame = FRAME_MEMBER.match(name)
        if not frame and not (TABLE_MEMBER.match(name) and name in rows):
            raise ArchiveDamaged(f"The archive holds an unexpected member {name!r}.")
        digest, size, lines = _digest(archive, name)
        if (digest, size) != (expected.get("sha256"), expected.get("size")):
            raise ArchiveDamaged(f"{name} is damaged: its sha256 or size differs from the manifest.")
        if frame and frame.group(2) != digest:
            raise ArchiveDamaged(f"{name} does not hold the image its name promises (sha256 {digest}).")
        if name in rows and lines != rows[name]:
            raise ArchiveDamaged(f"{name} has {lines} rows; the manifest says {rows[name]}.")


def _digest(archive: zipfile.ZipFile, name: str) -> tuple[str, int, int]:
    """(sha256, size, newline count) of one member, read in chunks; zip CRC and inflate errors included."""
    digest, size, lines = hashlib.sha256(), 0, 0
    try:
        with archive.open(name) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise ArchiveDamaged(f"{name} cannot be read from the archive ({exc}); it is corrupt or truncated."
                             ) from exc
    return digest.hexdigest(), size, lines
