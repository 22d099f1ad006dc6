"""Go Zone annotation and teaching: assignments, annotation versions, collections, quiz attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.schema.base import ANNOTATION_STATUSES, Base, BoxColumns, RationaleColumns, box_checks, one_of, utcnow


class AnnotationAssignment(Base):
    __tablename__ = "annotation_assignments"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotation(BoxColumns, RationaleColumns, Base):
    """An append-only version of a case's Go Zone annotation.

    Versions count up per case; the unique (case, version) key is what makes two concurrent saves
    on the same parent collide instead of overwriting each other.
    """

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("case_id", "version", name="uq_annotations_case_version"),
        CheckConstraint(one_of("status", ANNOTATION_STATUSES), name="status_known"),
        CheckConstraint("version >= 1", name="version_positive"),
        *box_checks(),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("annotations.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    phase: Mapped[str | None] = mapped_column(String(100))
    source_prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_comment: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- teaching ---------------------------------------------------------------------------------------

class Collection(Base):
    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_collections_owner_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CollectionItem(Base):
    __tablename__ = "collection_items"
    __table_args__ = (UniqueConstraint("collection_id", "position", name="uq_collection_items_position"),)

    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"),
                                               primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text)
    teaching_point: Mapped[str | None] = mapped_column(Text)


class QuizAttempt(BoxColumns, Base):
    __tablename__ = "quiz_attempts"
    __table_args__ = (
        CheckConstraint("iou IS NULL OR (iou >= 0 AND iou <= 1)", name="iou_range"),
        *box_checks(),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id"))
    phase: Mapped[str | None] = mapped_column(String(100))
    next_action: Mapped[str | None] = mapped_column(Text)
    critical_risk: Mapped[str | None] = mapped_column(Text)
    phase_correct: Mapped[bool | None] = mapped_column(Boolean)
    iou: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
