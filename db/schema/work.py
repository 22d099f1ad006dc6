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
from db.schema.base import TASKS as _TASKS  # teaching: the task a collection presents


class AnnotationAssignment(Base):
    """A case given to an annotator. ``lane`` 0 is the case's shared line of versions; an agreement study
    (several annotators per case) gives each annotator a lane of their own (their user id), so nobody
    starts from, or overwrites, a colleague's box."""

    __tablename__ = "annotation_assignments"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    lane: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotation(BoxColumns, RationaleColumns, Base):
    """An append-only version of a case's Go Zone annotation.

    Versions count up per (case, lane); the unique (case, lane, version) key is what makes two concurrent
    saves on the same parent collide instead of overwriting each other. Content columns are never updated;
    only the review outcome (status, reviewer, comment) is set once on a submitted version.
    """

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("case_id", "lane", "version", name="uq_annotations_case_lane_version"),
        CheckConstraint(one_of("status", ANNOTATION_STATUSES), name="status_known"),
        CheckConstraint("version >= 1", name="version_positive"),
        *box_checks(),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    lane: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("annotations.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    phase: Mapped[str | None] = mapped_column(String(100))
    source_prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"))
    # Where the content came from: "model:<name>", "reference", "empty", "edit", "labelstudio:<p>/<t>/<a>".
    source: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    review_comment: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- teaching ---------------------------------------------------------------------------------------

class Collection(Base):
    """An educator's named set of teaching cases; ``shared`` ones are visible to residents (quizzes)."""

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_collections_owner_name"),
                      CheckConstraint(one_of("task", _TASKS), name="task_known"))

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    # Whose predictions are shown: the task's outputs, the presenting model's reasoning revealed level by level.
    task: Mapped[str] = mapped_column(String(20), default="gozone", server_default="gozone")
    presenter_model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
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
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id", ondelete="SET NULL"))
    phase: Mapped[str | None] = mapped_column(String(100))
    next_action: Mapped[str | None] = mapped_column(Text)
    critical_risk: Mapped[str | None] = mapped_column(Text)
    phase_correct: Mapped[bool | None] = mapped_column(Boolean)
    iou: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
