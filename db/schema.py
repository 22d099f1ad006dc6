"""The whole SurgReview data model as typed SQLAlchemy 2 tables.

Rules that must always hold are constraints here, not hopes in services: unique keys, foreign keys,
check constraints on boxes, ratings and enumerations. Boxes are canonical float pixel corners of the
original frame (x1 < x2, y1 < y2). Later issues fill the workflows; every table exists from the start.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("admin", "reviewer", "annotator", "approver", "educator", "resident")
SPLITS = ("train", "val", "test")
TASKS = ("phase", "triplet", "action", "cvs", "localization", "gozone")
RUN_STATUSES = ("running", "done", "failed", "imported")
STUDY_STATUSES = ("draft", "running", "closed")
REVEAL_POLICIES = ("never", "after_submit")
LEVEL_MARKS = ("correct", "wrong", "na")
ANNOTATION_STATUSES = ("draft", "submitted", "approved", "rejected")
ITEM_STATES = ("open", "judged", "skipped")

# Named constraints keep Alembic migrations and error messages stable across SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _box_checks(prefix: str = "box") -> list[CheckConstraint]:
    """An optional box: all four corners or none, ordered, not negative."""
    x1, y1, x2, y2 = (f"{prefix}_{c}" for c in ("x1", "y1", "x2", "y2"))
    return [
        CheckConstraint(
            f"({x1} IS NULL AND {y1} IS NULL AND {x2} IS NULL AND {y2} IS NULL) OR "
            f"({x1} IS NOT NULL AND {y1} IS NOT NULL AND {x2} IS NOT NULL AND {y2} IS NOT NULL)",
            name=f"{prefix}_complete",
        ),
        CheckConstraint(f"{x1} IS NULL OR ({x1} >= 0 AND {y1} >= 0 AND {x1} < {x2} AND {y1} < {y2})",
                        name=f"{prefix}_ordered"),
    ]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class BoxColumns:
    """Mixin: an optional canonical Go Zone box in original-frame pixels."""

    box_x1: Mapped[float | None] = mapped_column(Float)
    box_y1: Mapped[float | None] = mapped_column(Float)
    box_x2: Mapped[float | None] = mapped_column(Float)
    box_y2: Mapped[float | None] = mapped_column(Float)

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        if self.box_x1 is None:
            return None
        return (self.box_x1, self.box_y1, self.box_x2, self.box_y2)  # type: ignore[return-value]

    @box.setter
    def box(self, value: tuple[float, float, float, float] | None) -> None:
        self.box_x1, self.box_y1, self.box_x2, self.box_y2 = value if value is not None else (None,) * 4


class RationaleColumns:
    """Mixin: the four Go Zone rationale parts of ResGo."""

    location: Mapped[str | None] = mapped_column(Text)
    exposure: Mapped[str | None] = mapped_column(Text)
    next_action: Mapped[str | None] = mapped_column(Text)
    critical_risk: Mapped[str | None] = mapped_column(Text)


# --- people -------------------------------------------------------------------------------------

class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    # Reviewers appear under this name in analyses, never under their username.
    pseudonym: Mapped[str] = mapped_column(String(32), unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    roles: Mapped[list[UserRole]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def role_names(self) -> set[str]:
        return {r.role for r in self.roles}


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role_known"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)

    user: Mapped[User] = relationship(back_populates="roles")


# --- frames, cases, reference labels --------------------------------------------------------------

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
        CheckConstraint(f"split IS NULL OR {_in('split', SPLITS)}", name="split_known"),
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
        *_box_checks(),
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


# --- models, runs, predictions --------------------------------------------------------------------

class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    backend: Mapped[str] = mapped_column(String(30))
    family: Mapped[str | None] = mapped_column(String(30))
    box_convention: Mapped[str | None] = mapped_column(String(30))
    location: Mapped[str | None] = mapped_column(String(1000))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    color: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Run(Base):
    """One model on one task with one prompt version and one parameter set; the prediction cache key."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("model_id", "task", "prompt_version", "params_sha256", name="uq_runs_cache_key"),
        CheckConstraint(_in("task", TASKS), name="task_known"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    task: Mapped[str] = mapped_column(String(20))
    prompt_version: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="running")
    source: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    model: Mapped[Model] = relationship()


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("run_id", "case_id", name="uq_predictions_run_case"),
        CheckConstraint("latency_ms IS NULL OR latency_ms >= 0", name="latency_nonnegative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    raw_text: Mapped[str | None] = mapped_column(Text)
    # Filled by the parser of models/: levels, answer, boxes (canonical pixels), rationale, warnings.
    parsed: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    phase: Mapped[str | None] = mapped_column(String(100))
    answer: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[Run] = relationship()
    case: Mapped[Case] = relationship()


# --- blind review studies ---------------------------------------------------------------------------

class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(_in("task", TASKS), name="task_known"),
        CheckConstraint(_in("status", STUDY_STATUSES), name="status_known"),
        CheckConstraint(_in("reveal_policy", REVEAL_POLICIES), name="reveal_known"),
        CheckConstraint("reviewers_per_case >= 1", name="k_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    reviewers_per_case: Mapped[int] = mapped_column(Integer)
    rubric: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reveal_policy: Mapped[str] = mapped_column(String(20), default="never")
    seed: Mapped[int] = mapped_column(Integer)
    case_filter: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # When set, the most informative cases are chosen (up to case_limit) and put first in every queue.
    order_by_informativeness: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    case_limit: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StudyModel(Base):
    __tablename__ = "study_models"
    __table_args__ = (UniqueConstraint("study_id", "position", name="uq_study_models_position"),)

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    position: Mapped[int] = mapped_column(Integer)


class StudyReviewer(Base):
    __tablename__ = "study_reviewers"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


class StudyCase(Base):
    """A case the study's filter found. Cases missing a model's prediction are kept here, listed, and never
    assigned; identity leaks found in the outputs are flagged for the admin."""

    __tablename__ = "study_cases"

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    informativeness: Mapped[float | None] = mapped_column(Float)
    # Names of the study's models without a usable prediction for this case; non-empty = not assigned.
    missing: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # [{"model": name, "terms": [...]}]: outputs that name a model or vendor (admin's view only).
    identity_leaks: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))


class ReviewItem(Base):
    """One case for one reviewer in one study, with its server-side letter map."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("study_id", "case_id", "reviewer_id", name="uq_review_items_case_reviewer"),
        UniqueConstraint("study_id", "reviewer_id", "position", name="uq_review_items_reviewer_position"),
        CheckConstraint(_in("state", ITEM_STATES), name="state_known"),
        # The queue query: a reviewer's first open item by position is one index seek.
        Index("ix_review_items_queue", "study_id", "reviewer_id", "state", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    # {"A": prediction_id, ...}: resolved only inside review/, never sent to a browser.
    letter_map: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Opaque random tokens (secrets.token_urlsafe) the browser holds instead of ids: one for the item and
    # one for its frame image, so neither database ids nor frame hashes reach a reviewer.
    token: Mapped[str] = mapped_column(String(32), unique=True)
    frame_token: Mapped[str] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(10), default="open", server_default="open")
    skipped_reason: Mapped[str | None] = mapped_column(Text)
    skipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Judgment(Base):
    """A reviewer's verdict on an item. Revisions are kept; one is current."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("item_id", "revision", name="uq_judgments_item_revision"),
        Index("uq_judgments_one_current", "item_id", unique=True,
              sqlite_where=text("is_current"), postgresql_where=text("is_current")),
        CheckConstraint("best_letter IS NULL OR length(best_letter) = 1", name="best_letter_single"),
        CheckConstraint("time_spent_ms IS NULL OR time_spent_ms >= 0", name="time_nonnegative"),
        CheckConstraint("revision >= 1", name="revision_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    # Who stored this revision (always the item's reviewer; kept so the record stands on its own).
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    # NULL with none_acceptable True means "none acceptable".
    best_letter: Mapped[str | None] = mapped_column(String(1))
    none_acceptable: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    time_spent_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    ratings: Mapped[list[OutputRating]] = relationship(cascade="all, delete-orphan")


class OutputRating(Base):
    """The rating of one lettered output within a judgment: 0/1 correctness and per-level marks."""

    __tablename__ = "output_ratings"
    __table_args__ = (
        CheckConstraint("correct IN (0, 1)", name="correct_binary"),
        *(CheckConstraint(f"level{n} IS NULL OR {_in(f'level{n}', LEVEL_MARKS)}", name=f"level{n}_known")
          for n in (1, 2, 3)),
    )

    judgment_id: Mapped[int] = mapped_column(ForeignKey("judgments.id", ondelete="CASCADE"), primary_key=True)
    letter: Mapped[str] = mapped_column(String(1), primary_key=True)
    correct: Mapped[int] = mapped_column(Integer)
    level1: Mapped[str | None] = mapped_column(String(10))
    level2: Mapped[str | None] = mapped_column(String(10))
    level3: Mapped[str | None] = mapped_column(String(10))
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)


# --- Go Zone annotation -----------------------------------------------------------------------------

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
        CheckConstraint(_in("status", ANNOTATION_STATUSES), name="status_known"),
        CheckConstraint("version >= 1", name="version_positive"),
        *_box_checks(),
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

    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text)
    teaching_point: Mapped[str | None] = mapped_column(Text)


class QuizAttempt(BoxColumns, Base):
    __tablename__ = "quiz_attempts"
    __table_args__ = (
        CheckConstraint("iou IS NULL OR (iou >= 0 AND iou <= 1)", name="iou_range"),
        *_box_checks(),
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


# --- audit and exports ------------------------------------------------------------------------------

class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # "cli:<os user>" or "system" when no user account acted.
    actor_label: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    entity_type: Mapped[str | None] = mapped_column(String(50))
    entity_id: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Export(Base):
    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    format: Mapped[str] = mapped_column(String(50))
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
