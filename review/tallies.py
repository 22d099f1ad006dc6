"""Per-output vote tallies (``VoteTally``): the votes of a study's current judgments, one row per output.

A judgment adds its ratings' votes to the tallies of the outputs it rates, in the transaction that stores it;
the revision it replaces takes its votes away again in the same transaction. So the tallies always equal a
count over the ratings of the current judgments, which ``rebuild_tallies`` recounts (after a bulk load that
wrote ratings directly; the migration that made the table counted the ratings so far in the same way).

A rating's votes: 1 reviewer, its 0/1 correctness, 1 if its letter is the judgment's best pick, and per level
1 correct or 1 wrong (an "na" or missing mark counts as neither).
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.audit import record
from db.schema import Judgment, OutputRating, Prediction, ReviewItem, Study, StudyModel, VoteTally


class TalliesOutOfStep(RuntimeError):
    """A judgment's votes do not fit the tallies: the judgment being replaced was never counted (ratings were
    written without ``count_judgment`` and the study was not recounted), or a rated prediction is not one of
    the study's outputs. A fault of the installation's data, not of the user."""


LEVELS = (1, 2, 3)
COUNTS = (
    "reviewers",
    "correct_votes",
    "best_votes",
    *(f"level{n}_{mark}" for n in LEVELS for mark in ("correct", "wrong")),
)
TALLY_COLUMNS = ("study_id", "prediction_id", "case_id", "model_id", *COUNTS, "judged_at")


def rating_votes(rating: OutputRating, best_letter: str | None) -> tuple[int, ...]:
    """The votes one rating gives its output, in COUNTS order."""
    levels = [getattr(rating, f"level{n}") for n in LEVELS]
    marks = [int(mark == side) for mark in levels for side in ("correct", "wrong")]
    return (1, int(rating.correct), int(best_letter is not None and best_letter == rating.letter), *marks)


def count_judgment(session: Session, item: ReviewItem, judgment: Judgment, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) the votes of ``judgment``, a judgment of ``item``, in the tallies
    of the outputs it rates. Rows are written in prediction order, so concurrent judgments of one case
    lock them in the same order."""
    letters = {rating.letter: item.letter_map[rating.letter] for rating in judgment.ratings}
    rows = [  # parameters named "v_" + column (an insert reserves the column names)
        {
            "v_study_id": item.study_id,
            "v_prediction_id": letters[rating.letter],
            "v_case_id": item.case_id,
            **{
                f"v_{c}": sign * vote
                for c, vote in zip(COUNTS, rating_votes(rating, judgment.best_letter), strict=True)
            },
            "v_judged_at": judgment.created_at,
        }
        for rating in sorted(judgment.ratings, key=lambda r: letters[r.letter])
    ]
    if not rows:
        return
    connection = session.connection()
    if sign > 0:
        if connection.execute(_upsert(connection.dialect.name), rows).rowcount != len(rows):
            raise TalliesOutOfStep(
                f"Review item {item.id} rates a prediction that is not one of study {item.study_id}'s outputs."
            )
        return
    for row in rows:  # a revision: its old votes leave tallies that must be there
        if connection.execute(_TAKE_AWAY, row).rowcount != 1:
            raise TalliesOutOfStep(
                f"Study {row['v_study_id']} has no vote tally for prediction {row['v_prediction_id']}, which a "
                "judgment being replaced rated; recount the tallies with `surgreview db recount-votes`."
            )


# Take a replaced judgment's votes (negative counts) from a tally. An upsert would not do: the database
# checks the constraints of the row it would insert (negative counts) before it finds the conflict.
_TAKE_AWAY = (
    update(VoteTally)
    .where(VoteTally.study_id == bindparam("v_study_id"), VoteTally.prediction_id == bindparam("v_prediction_id"))
    .values({c: getattr(VoteTally, c) + bindparam(f"v_{c}", type_=Integer) for c in COUNTS})
)


@cache
def _upsert(dialect: str):  # noqa: ANN202 - an Insert of the dialect
    """Insert a tally, or add its counts to the one there (the newer ``judged_at`` wins). The study's model
    of the prediction is looked up in the same statement (no row when it is not one of the study's). Built
    once per dialect."""
    values = select(
        bindparam("v_study_id", type_=Integer),
        Prediction.id,
        bindparam("v_case_id", type_=Integer),
        StudyModel.model_id,
        *(bindparam(f"v_{c}", type_=Integer) for c in COUNTS),
        bindparam("v_judged_at", type_=VoteTally.judged_at.type),
    ).join_from(
        Prediction,
        StudyModel,
        and_(StudyModel.run_id == Prediction.run_id, StudyModel.study_id == bindparam("v_study_id")),
    ).where(Prediction.id == bindparam("v_prediction_id"))
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(VoteTally)
    statement = statement.from_select([getattr(VoteTally, c) for c in TALLY_COLUMNS], values)
    new = statement.excluded
    newest: ColumnElement = case(
        (VoteTally.judged_at.is_(None), new.judged_at),
        (new.judged_at > VoteTally.judged_at, new.judged_at),
        else_=VoteTally.judged_at,
    )
    return statement.on_conflict_do_update(
        index_elements=[VoteTally.study_id, VoteTally.prediction_id],
        set_={**{c: getattr(VoteTally, c) + getattr(new, c) for c in COUNTS}, "judged_at": newest},
    ).execution_options(preserve_rowcount=True)  # an insert's row count is not kept otherwise


def counted_votes(study_id: int | None = None):  # noqa: ANN201 - a Select of VoteTally's columns
    """The tallies recounted from the ratings of the current judgments (of one study, or of every study), as
    a query whose columns are VoteTally's."""
    prediction = cast(ReviewItem.letter_map.op("->>")(OutputRating.letter), BigInteger)

    def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.sum(case((condition, 1), else_=0))

    levels = [
        _count(getattr(OutputRating, f"level{n}") == mark) for n in LEVELS for mark in ("correct", "wrong")
    ]
    query = (
        select(
            ReviewItem.study_id,
            Prediction.id,
            ReviewItem.case_id,
            StudyModel.model_id,
            func.count(),
            func.sum(OutputRating.correct),
            _count(Judgment.best_letter == OutputRating.letter),
            *levels,
            func.max(Judgment.created_at),
        )
        .select_from(OutputRating)
        .join(Judgment, and_(Judgment.id == OutputRating.judgment_id, Judgment.is_current))
        .join(ReviewItem, ReviewItem.id == Judgment.item_id)
        .join(Prediction, Prediction.id == prediction)
        .join(StudyModel, and_(StudyModel.study_id == ReviewItem.study_id, StudyModel.run_id == Prediction.run_id))
        .group_by(ReviewItem.study_id, Prediction.id, ReviewItem.case_id, StudyModel.model_id)
    )
    return query if study_id is None else query.where(ReviewItem.study_id == study_id)


def rebuild_tallies(session: Session, study_id: int) -> int:
    """Recount the study's tallies from its ratings (after ratings were written other than by
    ``review.judging``, such as a bulk load); returns the number of outputs counted."""
    session.flush()
    session.execute(delete(VoteTally).where(VoteTally.study_id == study_id))
    session.execute(
        insert(VoteTally).from_select([getattr(VoteTally, c) for c in TALLY_COLUMNS], counted_votes(study_id))
    )
    return session.scalar(select(func.count()).select_from(VoteTally).where(VoteTally.study_id == study_id))


def recount_studies(session: Session, by: str) -> dict[str, tuple[int, int]]:
    """Recount every study's tallies: {study name: (outputs counted, tallies that were wrong, missing or
    left over)}. A study whose tallies changed gets an audit event naming ``by``."""
    counted = {}
    for study_id, name in session.execute(select(Study.id, Study.name).order_by(Study.id)).all():
        before = _tally_rows(session, study_id)
        outputs = rebuild_tallies(session, study_id)
        after = _tally_rows(session, study_id)
        mended = sum(before.get(p) != after.get(p) for p in before.keys() | after.keys())
        counted[name] = (outputs, mended)
        if mended:
            record(session, "review.tallies_recounted", actor_label=by, entity_type="study", entity_id=study_id,
                   payload={"outputs": outputs, "mended": mended})
    return counted


def _tally_rows(session: Session, study_id: int) -> dict[int, tuple]:
    """{prediction id: its tally's counts and the rest} of a study."""
    columns = [getattr(VoteTally, c) for c in TALLY_COLUMNS if c not in ("study_id", "judged_at")]
    return {row[0]: tuple(row[1:]) for row in session.execute(select(*columns).where(VoteTally.study_id == study_id))}
