"""Shared pieces of the schema: the declarative base, naming convention, enumerations, box columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    MetaData,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def box_checks(prefix: str = "box") -> list[CheckConstraint]:
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
