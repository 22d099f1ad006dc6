"""What every Go Zone export shares: the labels it selects, safe file names, staged output, the summary.

An export reads the current reference label of each selected case (sorted by case key, so the same
database gives the same files), writes everything into a temporary folder beside the target and renames
that folder into place at the end: a reader or a crash never sees half an export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from annotation.workflow import gozone_vocabulary
from db import audit
from db.cases import CaseFilter
from db.errors import Conflict
from db.files import replace_directory
from db.schema import Case, Export, Frame, Label
from models.boxes import Box, BoxError, fit_box
from models.vocabularies import Vocabulary

# The source of a label that an approver's approval of a Go Zone annotation created (annotation/approval.py).
APPROVED_SOURCE_PREFIX = "annotation:"
RATIONALE_KEYS = ("location", "exposure", "next_action", "critical_risk")


@dataclass
class ExportSummary:
    """What an export wrote: case keys exported (with their file, relative to the target), cases skipped
    with the reason, warnings, and the content hash of the files."""

    kind: str
    path: Path
    exported: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    sha256: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return {"exported": len(self.exported), "skipped": len(self.skipped), "warnings": len(self.warnings)}

    def render(self) -> str:
        lines = [f"{self.kind}: {len(self.exported)} exported to {self.path}, {len(self.skipped)} skipped"]
        lines += [f"  skipped {key}: {reason}" for key, reason in self.skipped]
        lines += [f"  warning {key}: {message}" for key, message in self.warnings]
        return "\n".join(lines)


@dataclass(frozen=True)
class GoZoneItem:
    """One case to export: its current label, the label's box fitted to the frame, its phase vocabulary."""

    case: Case
    frame: Frame
    label: Label
    box: Box
    vocabulary: Vocabulary

    @property
    def image_suffix(self) -> str:
        return Path(self.frame.path).suffix.lower()


def select_go_zones(session: Session, case_filter: CaseFilter, *, approved_only: bool,
                    summary: ExportSummary) -> list[GoZoneItem]:
    """The exportable Go Zone labels of the cases ``case_filter`` selects, sorted by case key.

    A case without a current label with a box (or, with ``approved_only``, whose current label does not come
    from an approved annotation), or whose phase is outside its vocabulary, is added to ``summary.skipped``.
    """
    rows = session.execute(
        select(Case, Frame, Label).join(Frame, Case.frame_id == Frame.id)
        .outerjoin(Label, and_(Label.case_id == Case.id, Label.is_current))
        .where(Case.id.in_(case_filter.query()))).all()
    items = []
    for case, frame, label in sorted(rows, key=lambda row: row[0].key):
        item_or_reason = _exportable(case, frame, label, approved_only, summary)
        if isinstance(item_or_reason, str):
            summary.skipped.append((case.key, item_or_reason))
        else:
            items.append(item_or_reason)
    return items


def _exportable(case: Case, frame: Frame, label: Label | None, approved_only: bool,
                summary: ExportSummary) -> GoZoneItem | str:
    """The item to export, or the reason it is skipped; a box clipped to the frame is warned."""
    if label is None:
        return "no current reference label"
    if approved_only and not label.source.startswith(APPROVED_SOURCE_PREFIX):
        return f"the current label comes from {label.source!r}, not from an approved annotation"
    if label.box is None:
        return "the current label has no Go Zone box"
    vocabulary = gozone_vocabulary(case)
    if label.phase is not None and label.phase not in {p.id for p in vocabulary.phases}:
        return f"phase {label.phase!r} is not in the {vocabulary.title} vocabulary"
    try:
        fitted = fit_box(*label.box, frame.width, frame.height)
    except BoxError as exc:
        return f"the Go Zone box cannot be exported: {exc}"
    if fitted.clipped:
        summary.warnings.append((case.key, f"box {list(label.box)} reaches outside the "
                                           f"{frame.width}x{frame.height} frame; exported clipped"))
    return GoZoneItem(case, frame, label, fitted.box, vocabulary)


# --- file names -------------------------------------------------------------------------------------

_UNSAFE_CHARS = re.compile(r"[^\w.\-]")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)),
                     *(f"LPT{n}" for n in range(1, 10))}
MAX_SEGMENT_BYTES = 120
MAX_DEPTH = 8


def safe_segment(raw: str) -> str:
    """One path component made from ``raw``: only letters, digits, ``_ . -``; never empty, hidden, ``..``,
    a Windows device name, or longer than MAX_SEGMENT_BYTES (a long one ends in a hash of the original)."""
    segment = _UNSAFE_CHARS.sub("_", raw)
    if not segment or segment.startswith(".") or segment.split(".")[0].upper() in _WINDOWS_RESERVED:
        segment = f"_{segment}"
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        head = segment.encode("utf-8")[:MAX_SEGMENT_BYTES - 13].decode("utf-8", "ignore")
        segment = f"{head}-{digest}"
    return segment


def safe_segments(key: str) -> list[str]:
    """The relative path components for a case ``key`` ("dataset/video/000123"): slashes (either kind) make
    folders, empty components are dropped, so no key can name an absolute path or climb out with ``..``."""
    parts = [p for p in key.replace("\\", "/").split("/") if p]
    if len(parts) > MAX_DEPTH:
        parts = [*parts[:MAX_DEPTH - 1], "_".join(parts[MAX_DEPTH - 1:])]
    return [safe_segment(p) for p in parts] or ["_"]


class NameAllocator:
    """Unique relative file stems for case keys within one export.

    Two keys that clean to the same name (or differ only in letter case, which some file systems ignore),
    or a name that is also another key's folder, get ``~2``, ``~3``... on the later one; callers allocate
    in case-key order, so the names are deterministic.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._files: set[str] = set()
        self._folders: set[str] = set()

    def allocate(self, key: str, suffixes: tuple[str, ...]) -> str:
        """The stem (posix, relative) for ``key`` whose files are stem + each of ``suffixes``."""
        original = [*([self.prefix] if self.prefix else []), *safe_segments(key)]
        parts, bumps = list(original), [1] * len(original)
        while (clash := self._clash(parts, suffixes)) is not None:
            bumps[clash] += 1
            parts[clash] = f"{original[clash]}~{bumps[clash]}"
        stem = "/".join(parts)
        self._files.update((stem + suffix).casefold() for suffix in suffixes)
        self._folders.update("/".join(parts[:i]).casefold() for i in range(1, len(parts)))
        return stem

    def _clash(self, parts: list[str], suffixes: tuple[str, ...]) -> int | None:
        """The index of the first component that clashes with a name already given out, or None."""
        for i in range(1, len(parts)):
            if "/".join(parts[:i]).casefold() in self._files:  # a folder where a file already is
                return i - 1
        stem = "/".join(parts)
        files = [(stem + suffix).casefold() for suffix in suffixes]
        if any(f in self._files or f in self._folders for f in files):
            return len(parts) - 1
        return None


# --- output -----------------------------------------------------------------------------------------

@contextmanager
def staged_directory(target: Path, *, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside ``target`` to write the export into; renamed to ``target`` when the block
    ends without error, removed when it raises. Raises Conflict when ``target`` exists and not ``overwrite``.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise Conflict(f"{target} already exists; choose a new folder or allow overwriting it")
    if target.exists() and not target.is_dir():
        raise Conflict(f"{target} is a file; an export is written as a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes it private to us; an export is meant to be shared
        os.sync()  # one flush for every file written, so the renamed folder never holds lost files
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def copy_frame(source: Path, destination: Path, folders: set[Path]) -> None:
    """Copy a frame file out of the store (a copy, never a link: editing the export must not touch it)."""
    if destination.parent not in folders:
        destination.parent.mkdir(parents=True, exist_ok=True)
        folders.add(destination.parent)
    shutil.copyfile(source, destination)


def content_sha256(file_hashes: dict[str, str]) -> str:
    """One hash for an export: sha256 over its sorted (relative path, sha256 of the file) pairs."""
    digest = hashlib.sha256()
    for path in sorted(file_hashes):
        digest.update(f"{path}\t{file_hashes[path]}\n".encode())
    return digest.hexdigest()


def filters_of(case_filter: CaseFilter, **options: Any) -> dict[str, Any]:
    """The case filter and export options as JSON, for the export record and the audit event."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(case_filter).items()}
    return {**values, **options}


def record_export(session: Session, summary: ExportSummary, *, fmt: str, filters: dict[str, Any],
                  actor: str) -> Export:
    """The exports row and the ``export.<fmt>`` audit event of a finished export (the caller commits)."""
    export = Export(kind="gozone_labels", format=fmt, filters=filters, path=str(summary.path),
                    sha256=summary.sha256, counts=summary.counts)
    session.add(export)
    session.flush()
    audit.record(session, f"export.{fmt}", actor_label=actor, entity_type="export", entity_id=export.id,
                 payload={"path": str(summary.path), "filters": filters, "sha256": summary.sha256,
                          **summary.counts})
    return export
