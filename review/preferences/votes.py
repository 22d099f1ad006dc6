"""Reviewers' votes per output and the pair rules that turn them into verdicts (see ``review.preferences``).

Three readers give the same per-output votes: ``output_votes`` over the ``ratings`` frame of ``review.stats``
(one row per rated output, as ``vote_ratings`` or ``review.results.load_ratings`` read it); ``study_votes``,
which reads the study's vote tallies (one row per output, kept by ``review.tallies`` as judgments are stored);
and ``rated_votes``, which lets the database resolve each rating's letter and reads every rating as one small
integer, for exports limited to a judgment date range (a tally does not know when each vote was cast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from db.bundles import ExportFilters, case_query
from db.errors import DomainError
from db.schema import Case, Judgment, OutputRating, Prediction, ReviewItem, StudyModel, VoteTally
from review.access import prediction_models, study_models
from review.tallies import COUNTS, LEVELS

VOTE_COLUMNS = ["item", "case", "model", "correct", "best", "level1", "level2", "level3"]
COUNT_COLUMNS = list(COUNTS)  # reviewers, correct_votes, best_votes, level1_correct, level1_wrong, ...
LEVEL_COLUMNS = COUNT_COLUMNS[3:]


@dataclass(frozen=True)
class PairRules:
    """How reviewers' votes become chosen, rejected, correct and per-level labels (see ``review.preferences``)."""

    min_reviewers: int = 2
    ties: str = "drop"
    disagreements: str = "keep"

    def __post_init__(self) -> None:
        if self.min_reviewers < 1:
            raise DomainError("The minimum number of reviewers is at least 1.")
        if self.ties not in ("drop", "keep") or self.disagreements not in ("drop", "keep"):
            raise DomainError("Ties and disagreements are either 'drop' or 'keep'.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- votes and verdicts (pure) ------------------------------------------------------------------------------


def output_votes(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per output (case, model): reviewers, correct votes, best votes, and per level the correct and wrong
    marks (``level1_correct``, ``level1_wrong``, ...). Sorted by case and model."""
    frame = ratings.assign(
        _correct=ratings["correct"].astype(int), _best=ratings["best"].astype(bool).astype(int)
    )
    for n in LEVELS:
        marks = frame[f"level{n}"]
        frame[f"level{n}_correct"] = (marks == "correct").astype(int)
        frame[f"level{n}_wrong"] = (marks == "wrong").astype(int)
    grouped = frame.groupby(["case", "model"], sort=True)
    votes = grouped[["_correct", "_best", *LEVEL_COLUMNS]].sum()
    votes.insert(0, "reviewers", grouped.size())
    votes = votes.rename(columns={"_correct": "correct_votes", "_best": "best_votes"})
    return votes.reset_index()


def holds(yes: Any, total: Any, rules: PairRules, *, tie_holds: bool) -> Any:
    """Whether a property with ``yes`` of ``total`` votes holds under ``rules``. Written with operators only,
    so the same rule applies to numpy arrays (bools out) and to SQL column expressions (a condition)."""
    majority = 2 * yes > total
    if rules.ties == "keep" and tie_holds:
        majority = majority | (2 * yes == total)
    held = majority & (total >= rules.min_reviewers)
    if rules.disagreements == "drop":  # unanimity: every vote on one side
        held = held & ((yes == 0) | (yes == total))
    return held


def verdict_terms(reviewers: Any, correct_votes: Any, best_votes: Any, rules: PairRules) -> tuple[Any, Any, Any]:
    """(rated correct, rated incorrect, chosen) of outputs with these votes, as ``holds`` gives them: arrays
    or SQL conditions."""
    is_correct = holds(correct_votes, reviewers, rules, tie_holds=False)
    is_wrong = holds(reviewers - correct_votes, reviewers, rules, tie_holds=True)
    return is_correct, is_wrong, holds(best_votes, reviewers, rules, tie_holds=True) & is_correct


def verdicts(votes: pd.DataFrame, rules: PairRules) -> pd.DataFrame:
    """``votes`` with verdicts: ``label`` (True correct, False incorrect, NA undecided), ``chosen``,
    ``rejected``, and, where ``votes`` has the level counts, per level ``level{n}_label`` (True correct,
    False wrong, NA undecided)."""
    out = votes.copy()
    is_correct, is_wrong, chosen = verdict_terms(
        out["reviewers"].to_numpy(), out["correct_votes"].to_numpy(), out["best_votes"].to_numpy(), rules
    )
    out["label"] = pd.array(np.where(is_correct, True, np.where(is_wrong, False, None)), dtype="boolean")
    out["chosen"] = chosen
    out["rejected"] = is_wrong
    for n in LEVELS if f"level{LEVELS[-1]}_wrong" in out else ():
        right, wrong = out[f"level{n}_correct"].to_numpy(), out[f"level{n}_wrong"].to_numpy()
        marked = right + wrong
        good = holds(right, marked, rules, tie_holds=False)
        bad = holds(wrong, marked, rules, tie_holds=True)
        out[f"level{n}_label"] = pd.array(np.where(good, True, np.where(bad, False, None)), dtype="boolean")
    return out


def preference_pairs(judged: pd.DataFrame) -> pd.DataFrame:
    """(case, chosen, rejected) model pairs from ``verdicts``: every chosen output of a case with every
    rejected output of it, sorted. Where ``judged`` has each output's ``prediction`` id, the pairs carry
    them as ``chosen_prediction`` and ``rejected_prediction``."""
    columns = ["case", "model", "prediction"] if "prediction" in judged else ["case", "model"]
    chosen = judged.loc[judged["chosen"], columns].rename(
        columns={"model": "chosen", "prediction": "chosen_prediction"}
    )
    rejected = judged.loc[judged["rejected"], columns].rename(
        columns={"model": "rejected", "prediction": "rejected_prediction"}
    )
    pairs = chosen.merge(rejected, on="case")
    return pairs[pairs["chosen"] != pairs["rejected"]].sort_values(
        ["case", "chosen", "rejected"], ignore_index=True
    )


# --- one vote code per rating --------------------------------------------------------------------------------
# A rating as one integer: prediction id * 128 + correct + 2 * best + 4 * (m1 + 3 * m2 + 9 * m3), where a level
# mark m is 1 "correct", 2 "wrong" and 0 anything else (-1: the rating's letter is not in its item's letter
# map). The database computes the codes and joins them into one text, which numpy parses: a rating costs the
# reader no Python object, and ``decode_votes`` sums the codes per prediction.
_CODE_BITS = 7


def _mark(level: ColumnElement) -> ColumnElement:
    return case((level == "correct", 1), (level == "wrong", 2), else_=0)


def _vote_codes() -> ColumnElement:
    """The study's vote codes joined with commas (one text for every rating, NULL for none)."""
    prediction = cast(ReviewItem.letter_map.op("->>")(OutputRating.letter), BigInteger)
    best = case((Judgment.best_letter == OutputRating.letter, 2), else_=0)
    marks = _mark(OutputRating.level1) + 3 * _mark(OutputRating.level2) + 9 * _mark(OutputRating.level3)
    code = func.coalesce(prediction * (1 << _CODE_BITS) + OutputRating.correct + best + 4 * marks, -1)
    return func.aggregate_strings(cast(code, Text), ",")


def parse_codes(text: str | None) -> np.ndarray:
    """Vote codes joined by ``_vote_codes`` as an int64 array."""
    if not text:
        return np.zeros(0, dtype=np.int64)
    codes = np.fromstring(text, dtype=np.int64, sep=",")
    if (codes < 0).any():
        raise DomainError("A rating names a letter that its review item does not have.")
    return codes


def decode_votes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vote codes -> (prediction ids ascending, counts per prediction in COUNT_COLUMNS order, int64)."""
    predictions, inverse = np.unique(codes >> _CODE_BITS, return_inverse=True)
    low = codes & ((1 << _CODE_BITS) - 1)
    marks = low >> 2
    parts = [low & 1, (low >> 1) & 1]
    for n in range(len(LEVELS)):
        mark = (marks // 3**n) % 3
        parts += [mark == 1, mark == 2]
    counts = np.empty((len(predictions), len(COUNT_COLUMNS)), dtype=np.int64)
    counts[:, 0] = np.bincount(inverse, minlength=len(predictions))
    for column, part in enumerate(parts, start=1):
        counts[:, column] = np.bincount(inverse, weights=part, minlength=len(predictions))
    return predictions, counts


def _rated(study_id: int, filters: ExportFilters, *columns: ColumnElement) -> Select:
    """``columns`` over every rating of the study's current judgments whose case ``filters`` admit."""
    query = (
        select(*columns)
        .select_from(OutputRating)
        .join(Judgment, and_(Judgment.id == OutputRating.judgment_id, Judgment.is_current))
        .join(ReviewItem, ReviewItem.id == Judgment.item_id)
        .where(ReviewItem.study_id == study_id)
    )
    if filters.limits_cases:
        query = query.where(ReviewItem.case_id.in_(case_query(filters)))
    return query


def plain_rows(session: Session, statement: Select) -> list[tuple]:
    """Every row of ``statement`` as the driver's own tuples (no Row objects: for columns that need no result
    processing, such as integers and text)."""
    session.flush()
    result = session.connection().execute(statement)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def among(session: Session, column: ColumnElement, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column IN ids`` with the ids bound as one parameter: a JSON array read by ``json_each`` in SQLite, an
    array in PostgreSQL. A plain IN binds one parameter per id, and for 60,000 ids SQLAlchemy's expansion
    of them costs more than the query."""
    values = [int(i) for i in ids]
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(BigInteger), unique=True))
    table = func.json_each(bindparam(None, orjson.dumps(values).decode(), unique=True)).table_valued("value")
    return column.in_(select(table.c.value))


@dataclass(frozen=True)
class StudyVotes:
    """The votes on a study's judged outputs, one entry per output in prediction id order: ``predictions``,
    their ``cases`` and ``models`` (ids), ``counts`` (int64, a column per name of ``columns``) and the time
    of the newest judgment counted (None without one)."""

    predictions: np.ndarray
    cases: np.ndarray
    models: np.ndarray
    counts: np.ndarray
    columns: tuple[str, ...]
    newest: datetime | None

    def __len__(self) -> int:
        return len(self.predictions)


def study_votes(
    session: Session, study_id: int, filters: ExportFilters, *, levels: bool = True
) -> StudyVotes:
    """The votes of the study's current judgments on the outputs whose case ``filters`` admit; with a
    judgment date range, only the judgments made in it. ``levels=False`` leaves the per-level counts out
    (pairs and correctness labels do not use them). Read from the tallies, or from the ratings for a date
    range."""
    if filters.dated:
        return rated_votes(session, study_id, filters, levels=levels)
    columns = _count_columns(levels)
    tallies = select(
        VoteTally.prediction_id,
        VoteTally.case_id,
        VoteTally.model_id,
        *(getattr(VoteTally, c) for c in columns),
    ).where(VoteTally.study_id == study_id, VoteTally.reviewers > 0)
    newest = select(func.max(VoteTally.judged_at)).where(VoteTally.study_id == study_id)
    if filters.limits_cases:
        tallies = tallies.where(VoteTally.case_id.in_(case_query(filters)))
        newest = newest.where(VoteTally.case_id.in_(case_query(filters)))
    rows = plain_rows(session, tallies.order_by(VoteTally.prediction_id))
    width = 3 + len(columns)
    table = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=len(rows) * width).reshape(-1, width)
    return StudyVotes(
        table[:, 0],
        table[:, 1],
        table[:, 2],
        table[:, 3:],
        tuple(columns),
        session.scalar(newest),
    )


def rated_votes(
    session: Session, study_id: int, filters: ExportFilters, *, levels: bool = True
) -> StudyVotes:
    """``study_votes`` counted from every rating of the study's current judgments (the database resolves each
    rating's letter and sends it as one vote code); judgments outside ``filters``' date range are left out."""
    session.flush()
    codes, newest = _dated_votes(session, study_id, filters)
    predictions, counts = decode_votes(codes)
    outputs = plain_rows(
        session,
        select(Prediction.id, Prediction.case_id, StudyModel.model_id)
        .join(StudyModel, and_(StudyModel.run_id == Prediction.run_id, StudyModel.study_id == study_id))
        .where(among(session, Prediction.id, predictions.tolist()))
        .order_by(Prediction.id),
    )
    table = np.array(outputs, dtype=np.int64).reshape(-1, 3)
    if not np.array_equal(table[:, 0], predictions):
        raise DomainError("A rating names a prediction that is not one of the study's outputs.")
    columns = _count_columns(levels)
    return StudyVotes(predictions, table[:, 1], table[:, 2], counts[:, : len(columns)], tuple(columns), newest)


def _count_columns(levels: bool) -> list[str]:
    """The vote counts read: all, or without the per-level marks."""
    return COUNT_COLUMNS if levels else COUNT_COLUMNS[:3]


def _dated_votes(session: Session, study_id: int, filters: ExportFilters) -> tuple[np.ndarray, Any]:
    """Vote codes of the judgments whose time ``filters.in_range`` admits, and the newest of those times."""
    dates = dict(
        session.connection()
        .execute(
            select(ReviewItem.id, Judgment.created_at)
            .join(Judgment, and_(Judgment.item_id == ReviewItem.id, Judgment.is_current))
            .where(ReviewItem.study_id == study_id)
        )
        .all()
    )
    rows = plain_rows(
        session, _rated(study_id, filters, ReviewItem.id, _vote_codes()).group_by(ReviewItem.id)
    )
    kept = [(item, codes) for item, codes in rows if filters.in_range(dates[item])]
    newest = max((dates[item] for item, _ in kept), default=None)
    return parse_codes(",".join(codes for _, codes in kept)), newest


def votes_frame(
    counts: np.ndarray,
    cases: np.ndarray,
    models: np.ndarray,
    order: np.ndarray | None = None,
    *,
    predictions: np.ndarray | None = None,
    columns: Sequence[str] = COUNT_COLUMNS,
) -> pd.DataFrame:
    """``output_votes``' table from per-output votes (``counts``, a column per name of ``columns``) and each
    output's case key and model name, with a ``prediction`` id column where ``predictions`` are given.
    ``order``: each output's rank in (case key, model name) order where the caller knows it
    (``StudyOutputs.labels``), which spares sorting the strings."""
    at = np.argsort(order, kind="stable") if order is not None else slice(None)
    frame = pd.DataFrame({"case": cases[at], "model": models[at]})
    for column, values in zip(columns, counts[at].T, strict=True):
        frame[column] = values
    if predictions is not None:
        frame["prediction"] = predictions[at]
    if order is None:
        return frame.sort_values(["case", "model"], ignore_index=True)
    return frame


# --- the row-per-rating reader -------------------------------------------------------------------------------


def vote_ratings(session: Session, study_id: int) -> tuple[pd.DataFrame, dict[int, Any]]:
    """The ``ratings`` frame of ``review.stats`` restricted to the columns votes use (VOTE_COLUMNS, the same
    values ``review.results.load_ratings`` gives), and {item: time of its current judgment}. Each item's letter
    map is decoded once, and no flags, comments or pseudonyms are read."""
    model_of = prediction_models(session, study_id)
    names = {model.id: model.name for _, model in study_models(session, study_id)}
    session.flush()
    core = session.connection()
    items = core.execute(
        select(
            ReviewItem.id,
            Case.key,
            type_coerce(ReviewItem.letter_map, Text),
            Judgment.id,
            Judgment.best_letter,
            Judgment.created_at,
        )
        .join(Judgment, and_(Judgment.item_id == ReviewItem.id, Judgment.is_current))
        .join(Case, Case.id == ReviewItem.case_id)
        .where(ReviewItem.study_id == study_id)
    ).all()
    judgment = {j: (item, key, json_value(letters), best) for item, key, letters, j, best, _ in items}
    rows = core.execute(
        select(
            OutputRating.judgment_id,
            OutputRating.letter,
            OutputRating.correct,
            OutputRating.level1,
            OutputRating.level2,
            OutputRating.level3,
        )
        .join(Judgment, Judgment.id == OutputRating.judgment_id)
        .join(ReviewItem, ReviewItem.id == Judgment.item_id)
        .where(ReviewItem.study_id == study_id, Judgment.is_current)
        .order_by(ReviewItem.id, OutputRating.letter)
    )
    records = []
    for j, letter, correct, l1, l2, l3 in rows:
        item, key, letters, best = judgment[j]
        records.append((item, key, names[model_of[letters[letter]]], correct, best == letter, l1, l2, l3))
    return (
        pd.DataFrame.from_records(records, columns=VOTE_COLUMNS),
        {item: when for item, _, _, _, _, when in items},
    )


def json_value(value: Any) -> Any:
    """A JSON column read as text (SQLite) or already decoded by the driver (PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
