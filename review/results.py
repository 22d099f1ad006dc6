"""A study's results for its admin: unblinded (model names), reviewers under pseudonyms only.

``study_results`` loads the current judgments once into the ``ratings`` frame of ``review.stats`` and
computes every table from it; ``results_csv`` writes one of those tables as CSV text.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.schema import Case, Judgment, OutputRating, ReviewItem, StudyCase, User
from db.users import Actor, require
from review import stats
from review.access import get_study, prediction_models, study_models

RATING_COLUMNS = ["item", "case", "reviewer", "revision", "letter", "model", "best", "none_acceptable",
                  "correct", "level1", "level2", "level3", "flags", "time_spent_ms", "comment"]


@dataclass
class StudyResults:
    """Every table of a study's results (pandas DataFrames)."""

    ratings: pd.DataFrame
    selected: pd.DataFrame
    accuracy: pd.DataFrame
    levels: pd.DataFrame
    bradley_terry: pd.DataFrame
    agreement: pd.DataFrame
    progress: pd.DataFrame
    missing: pd.DataFrame
    leaks: pd.DataFrame

    @classmethod
    def table_names(cls) -> list[str]:
        """The names of the tables, in order: what ``results_csv`` accepts."""
        return [f.name for f in fields(cls)]


def study_results(session: Session, actor: Actor, study_id: int, *, n_boot: int = 1000,
                  seed: int | None = None) -> StudyResults:
    """The results of ``study_id`` for an admin (PermissionDenied otherwise); bootstraps seeded with ``seed``
    (default: the study's seed) so the same data give the same intervals."""
    require(actor, "admin")
    study = get_study(session, study_id)
    seed = study.seed if seed is None else seed
    ratings = load_ratings(session, study_id)
    judged = ratings[["item", "case", "reviewer", "model", "correct", "level1", "level2", "level3", "best"]]
    battles = stats.battles(judged) if len(judged) else pd.DataFrame(columns=["item", "model_a", "model_b"])
    return StudyResults(
        ratings=ratings,
        selected=_or_empty(judged, lambda: stats.selected_ratio(judged, n_boot=n_boot, seed=seed)),
        accuracy=_or_empty(judged, lambda: stats.accuracy_rating(judged, n_boot=n_boot, seed=seed)),
        levels=_or_empty(judged, lambda: stats.level_error_rates(judged)),
        bradley_terry=_or_empty(battles, lambda: stats.bradley_terry(battles, n_boot=n_boot, seed=seed)),
        agreement=_or_empty(judged, lambda: stats.agreement(judged)),
        progress=stats.reviewer_progress(load_items(session, study_id)),
        missing=_flags(session, study_id, "missing"),
        leaks=_flags(session, study_id, "identity_leaks"),
    )


def results_csv(session: Session, actor: Actor, study_id: int, table: str = "ratings", *,
                n_boot: int = 1000) -> str:
    """One table of ``study_results`` (by name, default the per-output ratings) as CSV text."""
    if table not in StudyResults.table_names():
        names = ", ".join(StudyResults.table_names())
        raise NotFound(f"There is no results table {table!r}; tables are {names}.")
    results = study_results(session, actor, study_id, n_boot=n_boot)
    return getattr(results, table).to_csv(index=False)


def load_ratings(session: Session, study_id: int) -> pd.DataFrame:
    """One row per rated output of every current judgment of the study, unblinded (RATING_COLUMNS)."""
    model_of = prediction_models(session, study_id)
    names = {model.id: model.name for _, model in study_models(session, study_id)}
    rows = session.execute(
        select(ReviewItem.id, Case.key, User.pseudonym, Judgment.revision, OutputRating.letter,
               ReviewItem.letter_map, Judgment.best_letter, Judgment.none_acceptable, OutputRating.correct,
               OutputRating.level1, OutputRating.level2, OutputRating.level3, OutputRating.flags,
               Judgment.time_spent_ms, Judgment.comment)
        .join(Judgment, and_(Judgment.item_id == ReviewItem.id, Judgment.is_current))
        .join(OutputRating, OutputRating.judgment_id == Judgment.id)
        .join(Case, Case.id == ReviewItem.case_id).join(User, User.id == ReviewItem.reviewer_id)
        .where(ReviewItem.study_id == study_id).order_by(ReviewItem.id, OutputRating.letter))
    records = [(item, key, reviewer, revision, letter, names[model_of[letter_map[letter]]], best == letter,
                none, correct, l1, l2, l3, ";".join(flags or ()), spent, comment)
               for (item, key, reviewer, revision, letter, letter_map, best, none, correct, l1, l2, l3, flags,
                    spent, comment) in rows]
    return pd.DataFrame.from_records(records, columns=RATING_COLUMNS)


def load_items(session: Session, study_id: int) -> pd.DataFrame:
    """One row per item of the study: reviewer (pseudonym), state, time_spent_ms of the current judgment."""
    rows = session.execute(
        select(User.pseudonym, ReviewItem.state, Judgment.time_spent_ms)
        .join(User, User.id == ReviewItem.reviewer_id)
        .outerjoin(Judgment, and_(Judgment.item_id == ReviewItem.id, Judgment.is_current))
        .where(ReviewItem.study_id == study_id))
    frame = pd.DataFrame(rows.all(), columns=["reviewer", "state", "time_spent_ms"])
    frame["time_spent_ms"] = frame["time_spent_ms"].astype(float)
    return frame


def _flags(session: Session, study_id: int, column: str) -> pd.DataFrame:
    """Missing-prediction cases (case, models) or identity-leak flags (case, model, terms) of the study."""
    rows = session.execute(select(Case.key, getattr(StudyCase, column))
                           .join(Case, Case.id == StudyCase.case_id)
                           .where(StudyCase.study_id == study_id).order_by(Case.key)).all()
    if column == "missing":
        return pd.DataFrame([(key, ", ".join(models)) for key, models in rows if models],
                            columns=["case", "models"])
    return pd.DataFrame([(key, flag["model"], ", ".join(flag["terms"]))
                         for key, flags in rows for flag in flags or ()], columns=["case", "model", "terms"])


def _or_empty(frame: pd.DataFrame, compute) -> pd.DataFrame:  # noqa: ANN001
    """``compute()`` when there is data, else an empty table (nothing judged yet)."""
    return compute() if len(frame) else pd.DataFrame()
