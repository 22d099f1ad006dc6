"""Blind review studies: studies, items, judgments and ratings."""

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
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.schema.base import (
    ITEM_STATES,
    LEVEL_MARKS,
    REVEAL_POLICIES,
    STUDY_STATUSES,
    TASKS,
    Base,
    one_of,
    utcnow,
)


class Study(Base):
    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint(one_of("task", TASKS), name="task_known"),
        CheckConstraint(one_of("status", STUDY_STATUSES), name="status_known"),
        CheckConstraint(one_of("reveal_policy", REVEAL_POLICIES), name="reveal_known"),
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
        CheckConstraint(one_of("state", ITEM_STATES), name="state_known"),
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
        *(CheckConstraint(f"level{n} IS NULL OR {one_of(f'level{n}', LEVEL_MARKS)}", name=f"level{n}_known")
          for n in (1, 2, 3)),
    )

    judgment_id: Mapped[int] = mapped_column(ForeignKey("judgments.id", ondelete="CASCADE"), primary_key=True)
    letter: Mapped[str] = mapped_column(String(1), primary_key=True)
    correct: Mapped[int] = mapped_column(Integer)
    level1: Mapped[str | None] = mapped_column(String(10))
    level2: Mapped[str | None] = mapped_column(String(10))
    level3: Mapped[str | None] = mapped_column(String(10))
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list)


class VoteTally(Base):
    """The votes of a study's current judgments on one output (one model's prediction for one case), kept by
    ``review.tallies`` in the transaction that stores each judgment: an export reads one row per output
    instead of one per rating. ``review.tallies.rebuild_tallies`` recounts them from the ratings."""

    __tablename__ = "vote_tallies"
    __table_args__ = (
        CheckConstraint("reviewers >= 0", name="reviewers_nonnegative"),
        *(CheckConstraint(f"{column} >= 0 AND {column} <= reviewers", name=f"{column}_counted")
          for column in ("correct_votes", "best_votes")),
        *(CheckConstraint(f"level{n}_correct >= 0 AND level{n}_wrong >= 0 "
                          f"AND level{n}_correct + level{n}_wrong <= reviewers", name=f"level{n}_counted")
          for n in (1, 2, 3)),
        # A case's outputs together: the preference pairs of an export are a join of a case's tallies.
        Index("ix_vote_tallies_case", "study_id", "case_id"),
    )

    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"),
                                               primary_key=True)
    # The output's case and the study's model of it, so that a study's votes are read from this table alone.
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    reviewers: Mapped[int] = mapped_column(Integer)
    correct_votes: Mapped[int] = mapped_column(Integer)
    best_votes: Mapped[int] = mapped_column(Integer)
    level1_correct: Mapped[int] = mapped_column(Integer)
    level1_wrong: Mapped[int] = mapped_column(Integer)
    level2_correct: Mapped[int] = mapped_column(Integer)
    level2_wrong: Mapped[int] = mapped_column(Integer)
    level3_correct: Mapped[int] = mapped_column(Integer)
    level3_wrong: Mapped[int] = mapped_column(Integer)
    # The newest of the current judgments counted here (an export's ``source_as_of``).
    judged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
