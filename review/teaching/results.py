"""Quiz results: every attempt as one table, and pure summaries of it (per resident, per case, phase
confusions, score over time).

Educators see every resident's attempts; a resident sees their own only (asking for anyone else's is refused).
The score of an attempt is its hardcore IoU (a box under a wrong phase counts 0). Per-case difficulty uses
each resident's FIRST attempt at the case: later attempts come after the answer was shown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from db.errors import PermissionDenied
from db.schema import Case, Collection, Label, QuizAttempt, User, UserRole
from db.users import Actor, require
from review.teaching.collections import EDUCATOR, RESIDENT
from review.teaching.quiz import hardcore_iou

ATTEMPT_COLUMNS = ["attempt", "created_at", "resident", "case", "case_key", "collection", "phase",
                   "reference_phase", "phase_correct", "iou", "hardcore_iou", "attempt_no", "first"]
ROLLING = 5  # attempts in the moving average of the score over time


def _rows(session: Session, resident_id: int | None, collection_id: int | None) -> list[dict]:
    label = aliased(Label)
    query = (select(QuizAttempt, User.username, Case.key, Collection.name, label.phase)
             .join(User, User.id == QuizAttempt.user_id).join(Case, Case.id == QuizAttempt.case_id)
             .outerjoin(Collection, Collection.id == QuizAttempt.collection_id)
             .outerjoin(label, (label.case_id == Case.id) & label.is_current)
             .order_by(QuizAttempt.created_at, QuizAttempt.id))
    if resident_id is not None:
        query = query.where(QuizAttempt.user_id == resident_id)
    if collection_id is not None:
        query = query.where(QuizAttempt.collection_id == collection_id)
    return [{"attempt": a.id, "created_at": a.created_at, "resident": username, "case": a.case_id,
             "case_key": key, "collection": collection, "phase": a.phase, "reference_phase": reference,
             "phase_correct": a.phase_correct, "iou": a.iou,
             "hardcore_iou": hardcore_iou(a.iou, a.phase_correct)}
            for a, username, key, collection, reference in session.execute(query)]


def attempts_table(session: Session, actor: Actor, *, resident: str | None = None,
                   collection_id: int | None = None) -> pd.DataFrame:
    """Every attempt visible to ``actor`` (a resident: their own), oldest first, with ``attempt_no`` (the
    resident's n-th attempt at that case) and ``first``. PermissionDenied when a resident asks for another."""
    require(actor, EDUCATOR, RESIDENT)
    resident_id = None
    if not actor.has(EDUCATOR):
        if resident not in (None, "", actor.username):
            raise PermissionDenied("You can only see your own quiz results.")
        resident_id = actor.user_id
    elif resident:
        resident_id = session.scalar(select(User.id).where(User.username == resident))
        if resident_id is None:
            return pd.DataFrame(columns=ATTEMPT_COLUMNS)
    table = pd.DataFrame(_rows(session, resident_id, collection_id), columns=ATTEMPT_COLUMNS[:-2])
    table["attempt_no"] = table.groupby(["resident", "case"]).cumcount() + 1
    table["first"] = table["attempt_no"] == 1
    return table[ATTEMPT_COLUMNS]


def _share(values: pd.Series) -> float | None:
    known = values.dropna()
    return float(known.astype(float).mean()) if len(known) else None


def _summary(group: pd.DataFrame) -> pd.Series:
    return pd.Series({"attempts": len(group), "phase_accuracy": _share(group["phase_correct"]),
                      "mean_iou": _share(group["iou"]), "mean_hardcore_iou": _share(group["hardcore_iou"])})


def per_resident(table: pd.DataFrame) -> pd.DataFrame:
    """Per resident over all their attempts: attempts, cases tried, phase accuracy, mean (hardcore) IoU."""
    columns = ["resident", "attempts", "cases", "phase_accuracy", "mean_iou", "mean_hardcore_iou"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    out = table.groupby("resident")[["phase_correct", "iou", "hardcore_iou"]].apply(_summary).reset_index()
    out["cases"] = out["resident"].map(table.groupby("resident")["case"].nunique())
    return out[columns]


def per_case(table: pd.DataFrame) -> pd.DataFrame:
    """Per case over first attempts only, hardest first (lowest mean hardcore IoU, then phase accuracy)."""
    columns = ["case_key", "residents", "phase_accuracy", "mean_iou", "mean_hardcore_iou"]
    first = table[table["first"]] if not table.empty else table
    if first.empty:
        return pd.DataFrame(columns=columns)
    out = first.groupby("case_key")[["phase_correct", "iou", "hardcore_iou"]].apply(_summary).reset_index()
    out = out.rename(columns={"attempts": "residents"})
    return out.sort_values(["mean_hardcore_iou", "phase_accuracy", "case_key"], na_position="last")[columns]


def phase_confusions(table: pd.DataFrame) -> pd.DataFrame:
    """Counts of (reference phase, phase the resident chose) over attempts with a known reference."""
    columns = ["reference_phase", "phase", "count"]
    known = table.dropna(subset=["reference_phase", "phase"]) if not table.empty else table
    if known.empty:
        return pd.DataFrame(columns=columns)
    return (known.groupby(["reference_phase", "phase"]).size().rename("count").reset_index()
            .sort_values(["reference_phase", "phase"]))[columns]


def score_over_time(table: pd.DataFrame, window: int = ROLLING) -> pd.DataFrame:
    """Per resident, each attempt in time order with its hardcore IoU and the moving average of ``window``."""
    columns = ["resident", "n", "created_at", "case_key", "hardcore_iou", "rolling"]
    scored = table.dropna(subset=["hardcore_iou"]) if not table.empty else table
    if scored.empty:
        return pd.DataFrame(columns=columns)
    scored = scored.sort_values(["resident", "created_at", "attempt"]).copy()
    scored["n"] = scored.groupby("resident").cumcount() + 1
    scored["hardcore_iou"] = scored["hardcore_iou"].astype(float)
    scored["rolling"] = scored.groupby("resident")["hardcore_iou"].transform(
        lambda s: s.rolling(window, min_periods=1).mean())
    return scored[columns].reset_index(drop=True)


@dataclass
class TeachingResults:
    """Every table of the quiz results visible to one user."""

    attempts: pd.DataFrame
    residents: pd.DataFrame
    cases: pd.DataFrame
    confusions: pd.DataFrame
    timeline: pd.DataFrame

    @classmethod
    def table_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def teaching_results(session: Session, actor: Actor, *, resident: str | None = None,
                     collection_id: int | None = None) -> TeachingResults:
    """The quiz results ``actor`` may see, optionally for one resident and one collection."""
    table = attempts_table(session, actor, resident=resident, collection_id=collection_id)
    return TeachingResults(table, per_resident(table), per_case(table), phase_confusions(table),
                           score_over_time(table))


def residents(session: Session, actor: Actor) -> list[str]:
    """Usernames of users with the resident role (educators only): the results filter."""
    require(actor, EDUCATOR)
    return list(session.scalars(select(User.username).join(UserRole, UserRole.user_id == User.id)
                                .where(UserRole.role == RESIDENT).order_by(User.username)))
