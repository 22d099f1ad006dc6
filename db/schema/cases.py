"""Frames, cases and reference labels."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.schema.base import SPLITS, Base, BoxColumns, RationaleColumns, box_checks, one_of, utcnow


class Frame(Base):
    """One stored image, content-addressed: the same bytes are stored once."""

    __tablename__ = "frames"
    __table_args__ = (
        CheckConstraint("length(sha256) = 64", name="sha256_length"),
        CheckConstraint("width > 0 AND height > 0", name="positive_size"),
        CheckConstraint("size_bytes > 0", name="nonempty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(10))
    size_bytes: Mapped[int] = mapped_column(Integer)
    # Relative to the frame store root, so a store can move with its database.
    path: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Case(Base):
    """A frame in its clinical context: dataset, procedure, video, position, split."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(f"split IS NULL OR {one_of('split', SPLITS)}", name="split_known"),
        CheckConstraint("frame_index IS NULL OR frame_index >= 0", name="frame_index_nonnegative"),
        Index("ix_cases_dataset_video", "dataset", "video"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable reference used by prediction files and exports: "<dataset>/<video>/<frame index>" or a path.
    key: Mapped[str] = mapped_column(String(400), unique=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(100), index=True)
    procedure: Mapped[str] = mapped_column(String(100), index=True)
    video: Mapped[str | None] = mapped_column(String(200))
    frame_index: Mapped[int | None] = mapped_column(Integer)
    timestamp_s: Mapped[float | None] = mapped_column(Float)
    split: Mapped[str | None] = mapped_column(String(10), index=True)
    source_name: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    frame: Mapped[Frame] = relationship()
    tags: Mapped[list[CaseTag]] = relationship(cascade="all, delete-orphan", order_by="CaseTag.tag")


class CaseTag(Base):
    __tablename__ = "case_tags"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Label(BoxColumns, RationaleColumns, Base):
    """A reference label of a case from one source (a LabelMe file, a dataset, an approved annotation).

    At most one label per case is current: the reference the metrics and exports use.
    """

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("case_id", "source", name="uq_labels_case_source"),
        Index("uq_labels_one_current", "case_id", unique=True,
              sqlite_where=text("is_current"), postgresql_where=text("is_current")),
        *box_checks(),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(500))
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    phase: Mapped[str | None] = mapped_column(String(100))
    phase_raw: Mapped[str | None] = mapped_column(String(500))
    action: Mapped[str | None] = mapped_column(String(100))
    triplets: Mapped[list[Any] | None] = mapped_column(JSON)
    cvs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Other boxes (instruments): [{"label": str, "box": [x1, y1, x2, y2]}] in canonical pixels.
    boxes: Mapped[list[Any] | None] = mapped_column(JSON)
    # What the source held that we do not model (LabelMe's unknown keys), kept for a faithful export.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
