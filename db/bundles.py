"""Export bundles: a directory of data files, copied frames and a manifest, written atomically.

Everything is written into a hidden temporary directory beside the target (same file system), each file
fsynced, the manifest last; then one rename makes the bundle appear whole. A killed export leaves only a
temporary directory that the next export to the same target removes (its process is gone), never a half
bundle under the target's name. Images are copied once per frame (by content hash) from the frame store and
referenced by relative path.

Contents are deterministic for the same database: records are written in the order given (builders sort),
JSON is written by orjson with keys in insertion order, images are named by sha256, and the manifest holds
no wall-clock time: ``source_as_of`` is the newest source row's timestamp.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from db.audit import record
from db.errors import Conflict, DomainError, NotFound
from db.files import fsync_directory, replace_directory
from db.frames import FrameStore
from db.schema import Case, Export, Frame, Label, Study, StudyCase

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
IMAGES = "images"
# A label whose source starts with this came from an approved Go Zone annotation.
APPROVED_SOURCE_PREFIX = "annotation:"
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)-[0-9a-f]+$")
_CHUNK = 512


@dataclass(frozen=True)
class ExportFilters:
    """What an export takes: a study (by name), dataset, split, only cases whose reference label comes from
    an approved annotation, and a date range on the source rows (judgments or labels), ``until`` exclusive."""

    study: str | None = None
    dataset: str | None = None
    split: str | None = None
    approved_only: bool = False
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the manifest and the exports table (dates as ISO 8601)."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    @property
    def dated(self) -> bool:
        """Whether a date range limits the source rows."""
        return self.since is not None or self.until is not None

    @property
    def limits_cases(self) -> bool:
        """Whether the filters admit only some cases (``case_query``)."""
        return any((self.dataset, self.split, self.study, self.approved_only))

    def in_range(self, when: datetime | None) -> bool:
        """Whether ``when`` lies in [since, until) (a missing bound is open)."""
        if when is None:
            return not self.dated
        when = _aware(when)
        return (self.since is None or when >= _aware(self.since)) and (
            self.until is None or when < _aware(self.until)
        )


def _aware(when: datetime) -> datetime:
    """SQLite returns naive datetimes for stored UTC times: read them as UTC."""
    from datetime import UTC

    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass
class BundleResult:
    """A finished bundle: its directory, the manifest written into it and the exports row."""

    path: Path
    manifest: dict[str, Any]
    export: Export | None = None

    @property
    def counts(self) -> dict[str, Any]:
        return self.manifest["counts"]


@dataclass
class _Written:
    sha256: str
    size: int
    records: int | None = None


@dataclass
class Bundle:
    """A bundle being written into ``tmp`` for ``target``. Use ``open_bundle``."""

    target: Path
    tmp: Path
    store: FrameStore | None
    files: dict[str, _Written] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # frame sha256 -> relative path

    def image(self, frame: Frame) -> str:
        """The relative path of ``frame``'s copy in the bundle (copied on first use). ``frame`` may be any
        object with a Frame's ``sha256``, ``path`` and ``size_bytes``."""
        found = self.images.get(frame.sha256)
        if found is not None:
            return found
        if self.store is None:
            raise DomainError("This export has no frame store to copy images from.")
        relative = f"{IMAGES}/{frame.sha256}{Path(frame.path).suffix.lower()}"
        destination = self.tmp / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        source = self.store.path(frame)
        if not source.is_file():
            raise DomainError(f"The frame file {frame.path} is missing from the frame store.")
        shutil.copyfile(source, destination)
        self.images[frame.sha256] = relative
        self.files[relative] = _Written(frame.sha256, frame.size_bytes)
        return relative

    def write_jsonl(self, name: str, records: Iterable[Mapping[str, Any] | bytes]) -> int:
        """Write ``records`` as JSON Lines to ``name``; returns how many. A record given as bytes is one JSON
        document already encoded (compact, no newline) and is written as it is."""
        digest, size, count = hashlib.sha256(), 0, 0
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        with self._open(name) as handle:
            chunk: list[bytes] = []
            for row in records:
                if isinstance(row, bytes):
                    chunk += (row, b"\n")
                else:
                    chunk.append(dumps(row, option=newline))
                count += 1
                if len(chunk) >= _CHUNK:
                    size += _flush(handle, digest, chunk)
            size += _flush(handle, digest, chunk)
            _sync(handle)
        self.files[name] = _Written(digest.hexdigest(), size, count)
        return count

    def write_json(self, name: str, value: Any, *, records: int | None = None) -> None:
        """Write one JSON document (indented, keys in insertion order) to ``name``."""
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"
        with self._open(name) as handle:
            handle.write(data)
            _sync(handle)
        self.files[name] = _Written(hashlib.sha256(data).hexdigest(), len(data), records)

    def _open(self, name: str):
        if name in self.files or name == MANIFEST or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"bad or repeated bundle file name {name!r}")
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb")

    def manifest(
        self,
        kind: str,
        fmt: str,
        *,
        filters: ExportFilters,
        counts: Mapping[str, Any],
        source_as_of: datetime | None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The manifest: schema version, kind, format, filters, counts, every file's sha256, size and record
        count, and a content hash over the sorted (name, sha256) list."""
        files = {
            name: {
                "sha256": w.sha256,
                "bytes": w.size,
                **({"records": w.records} if w.records is not None else {}),
            }
            for name, w in sorted(self.files.items())
        }
        content = hashlib.sha256(
            "".join(f"{n}\0{f['sha256']}\n" for n, f in files.items()).encode()
        ).hexdigest()
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "format": fmt,
            "filters": filters.as_dict(),
            **(dict(extra) if extra else {}),
            "counts": dict(counts),
            "source_as_of": _aware(source_as_of).isoformat() if source_as_of else None,
            "images": len(self.images),
            "files": files,
            "content_sha256": content,
        }


def _flush(handle, digest, chunk: list[bytes]) -> int:
    """Write the lines of ``chunk`` (each ending with a newline) in one go, hash them and empty it."""
    if not chunk:
        return 0
    data = b"".join(chunk)
    handle.write(data)
    digest.update(data)
    chunk.clear()
    return len(data)


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove temporary directories that killed exports to ``target`` left behind; return them."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = _PARTIAL.match(entry.name)
        if match and match["name"] == target.name and not _alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: an export allocates hundreds of thousands of acyclic rows, and
    the collections they trigger (each walking every live object) cost more than building them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class open_bundle:
    """``with open_bundle(target, store, overwrite=False) as bundle:`` write files, then ``bundle.commit``.

    The temporary directory is removed when the block raises or ends without a commit. Conflict when
    ``target`` exists and ``overwrite`` is False.
    """

    def __init__(self, target: Path, store: FrameStore | None, *, overwrite: bool = False) -> None:
        self.target = Path(target).absolute()
        self.store = store
        self.overwrite = overwrite
        self.bundle: Bundle | None = None
        self.committed = False

    def __enter__(self) -> Bundle:
        if self.target.exists() and not self.overwrite:
            raise Conflict(f"{self.target} exists already; choose another folder or overwrite it.")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.target)
        tmp = self.target.parent / f".{self.target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        self.bundle = Bundle(self.target, tmp, self.store)
        return self.bundle

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bundle is not None and self.bundle.tmp.exists():
            shutil.rmtree(self.bundle.tmp, ignore_errors=True)


def commit_bundle(bundle: Bundle, manifest: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write the manifest, flush everything to disk and rename the bundle into place; return its path."""
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
    with open(bundle.tmp / MANIFEST, "xb") as handle:
        handle.write(data)
        _sync(handle)
    if bundle.images:
        os.sync()  # one flush for every copied image instead of one fsync each
    for folder in {bundle.tmp, *(bundle.tmp / Path(name).parent for name in bundle.files)}:
        fsync_directory(folder)
    if bundle.target.exists() and not overwrite:
        raise Conflict(f"{bundle.target} exists already; choose another folder or overwrite it.")
    replace_directory(bundle.tmp, bundle.target)
    return bundle.target


def record_export(
    session: Session, result: BundleResult, *, actor_id: int | None, actor_label: str | None
) -> Export:
    """Add the exports row and the audit event of a finished bundle (in the caller's transaction)."""
    manifest = result.manifest
    export = Export(
        kind=manifest["kind"],
        format=manifest["format"],
        filters=manifest["filters"],
        path=str(result.path),
        sha256=manifest["content_sha256"],
        counts=manifest["counts"],
        created_by=actor_id,
    )
    session.add(export)
    session.flush()
    record(
        session,
        "export.create",
        actor_id=actor_id,
        actor_label=actor_label,
        entity_type="export",
        entity_id=export.id,
        payload={
            "kind": export.kind,
            "format": export.format,
            "path": export.path,
            "sha256": export.sha256,
            "counts": export.counts,
            "filters": export.filters,
        },
    )
    result.export = export
    return export


def finish_bundle(
    session: Session,
    bundle: Bundle,
    manifest: dict[str, Any],
    *,
    overwrite: bool = False,
    actor_id: int | None = None,
    actor_label: str | None = None,
) -> BundleResult:
    """Record the export (row and audit event, flushed) and then move the bundle into place: a database that
    refuses the row leaves no bundle behind."""
    result = BundleResult(bundle.target, manifest)
    record_export(session, result, actor_id=actor_id, actor_label=actor_label)
    commit_bundle(bundle, manifest, overwrite=overwrite)
    return result


def case_query(filters: ExportFilters) -> Select[tuple[int]]:
    """The ids of the cases ``filters`` admits by dataset, split, study (its cases) and, with
    ``approved_only``, a current label from an approved annotation."""
    query = select(Case.id)
    if filters.dataset is not None:
        query = query.where(Case.dataset == filters.dataset)
    if filters.split is not None:
        query = query.where(Case.split == filters.split)
    if filters.study is not None:
        query = query.where(
            Case.id.in_(
                select(StudyCase.case_id)
                .join(Study, Study.id == StudyCase.study_id)
                .where(Study.name == filters.study)
            )
        )
    if filters.approved_only:
        query = query.where(
            Case.id.in_(
                select(Label.case_id).where(
                    Label.is_current, Label.source.startswith(APPROVED_SOURCE_PREFIX, autoescape=True)
                )
            )
        )
    return query


def find_study_ids(session: Session, filters: ExportFilters) -> list[int]:
    """The study named by ``filters`` (NotFound when there is none), or every study, by id."""
    query = select(Study.id).order_by(Study.id)
    if filters.study is not None:
        query = query.where(Study.name == filters.study)
    ids = list(session.scalars(query))
    if filters.study is not None and not ids:
        raise NotFound(f"There is no study called {filters.study!r}.")
    return ids
