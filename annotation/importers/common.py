"""What every importer shares: case metadata, the summary, and adding one frame as a case."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db.frames import FrameStore, ImageRejected, ValidatedImage
from db.schema import SPLITS, Case, CaseTag

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


class ImportRejected(ValueError):
    """One item cannot be imported; the message is the reason shown in the summary."""


@dataclass(frozen=True)
class CaseMeta:
    """Where a frame comes from. ``video`` and ``frame_index`` are inferred from paths when not given."""

    dataset: str
    procedure: str = "laparoscopic_cholecystectomy"
    video: str | None = None
    frame_index: int | None = None
    timestamp_s: float | None = None
    split: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.dataset or "/" in self.dataset:
            raise ValueError(f"dataset must be a non-empty name without '/', got {self.dataset!r}")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.frame_index is not None and self.frame_index < 0:
            raise ValueError(f"frame index must be >= 0, got {self.frame_index}")

    def with_position(self, video: str | None, frame_index: int | None,
                      timestamp_s: float | None = None) -> CaseMeta:
        return replace(self, video=self.video or video,
                       frame_index=frame_index if self.frame_index is None else self.frame_index,
                       timestamp_s=timestamp_s if self.timestamp_s is None else self.timestamp_s)

    def case_key(self, fallback: str) -> str:
        """``dataset/video/000123`` when the position is known, else ``dataset/<fallback>``."""
        if self.video is not None and self.frame_index is not None:
            return f"{self.dataset}/{self.video}/{self.frame_index:06d}"
        return f"{self.dataset}/{fallback}"


@dataclass
class ImportSummary:
    kind: str
    imported: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def merge(self, other: ImportSummary) -> ImportSummary:
        self.imported += other.imported
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.warnings += other.warnings
        return self

    @property
    def counts(self) -> dict[str, int]:
        return {"imported": len(self.imported), "duplicates": len(self.duplicates),
                "rejected": len(self.rejected), "warnings": len(self.warnings)}

    def render(self) -> str:
        lines = [f"{self.kind}: {len(self.imported)} imported, {len(self.duplicates)} skipped as duplicate, "
                 f"{len(self.rejected)} rejected"]
        lines += [f"  rejected {item}: {reason}" for item, reason in self.rejected]
        lines += [f"  warning {item}: {message}" for item, message in self.warnings]
        return "\n".join(lines)


@contextmanager
def item_scope(session: Session, store: FrameStore, summary: ImportSummary, item: str) -> Iterator[None]:
    """Run one item's writes in a savepoint; a rejection or database error undoes that item only."""
    # The store only appends to this list, so a length marks where this item starts; a set of the paths
    # would cost time proportional to every file written so far, for every item.
    written_before = len(session.info.get("frame_store_new_files", []))
    try:
        with session.begin_nested():
            yield
    except (ImportRejected, ImageRejected) as exc:
        _drop_files_since(session, written_before)
        summary.rejected.append((item, str(exc)))
    except SQLAlchemyError as exc:
        _drop_files_since(session, written_before)
        summary.rejected.append((item, f"database refused the item: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"))


def _drop_files_since(session: Session, before: int) -> None:
    new_files = session.info.get("frame_store_new_files", [])
    for path in new_files[before:]:
        path.unlink(missing_ok=True)
    del new_files[before:]


def add_case(session: Session, store: FrameStore, image: ValidatedImage, meta: CaseMeta, *,
             fallback_key: str, source_name: str | None) -> tuple[Case, bool]:
    """The case for ``image`` under ``meta``: (existing case, False) for a duplicate, else (new case, True).

    A duplicate is a case with the same key, or the same frame already in the same dataset.
    """
    key = meta.case_key(fallback_key)
    existing = session.scalar(select(Case).where(Case.key == key))
    if existing is not None:
        if existing.frame.sha256 != image.sha256:
            raise ImportRejected(f"case {key} already holds a different image; import it under another "
                                 "dataset or video name")
        return existing, False
    frame, created = store.put(session, image, flush=False)
    if not created:  # a frame that is new to the store cannot be in any case yet
        same_frame = session.scalar(select(Case).where(Case.frame_id == frame.id, Case.dataset == meta.dataset))
        if same_frame is not None:
            return same_frame, False
    case = Case(key=key, frame=frame, dataset=meta.dataset, procedure=meta.procedure, video=meta.video,
                frame_index=meta.frame_index, timestamp_s=meta.timestamp_s, split=meta.split,
                source_name=source_name, tags=[CaseTag(tag=t) for t in sorted(set(meta.tags))])
    session.add(case)
    session.flush()
    return case, True


def expand_image_paths(sources: list[Path]) -> Iterator[tuple[Path, Path]]:
    """(root, file) for every source file and every image file under every source folder, sorted."""
    for source in sources:
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    yield source, path
        else:
            yield source.parent, source

