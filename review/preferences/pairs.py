"""Preference pairs decided by the database from the vote tallies.

The pair rules (``votes.verdict_terms``, one definition for numpy arrays and SQL expressions) become the
conditions of a join of each case's tallies with themselves: chosen output x rejected output of the same
case, sorted by (case key, chosen model, rejected model). A DPO export then reads its pairs and a few counts
instead of every judged output's votes, and never holds the study's outputs in Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, aliased

from db.bundles import ExportFilters, case_query
from db.schema import Case, Model, VoteTally
from review.preferences.votes import PairRules, plain_rows, verdict_terms

# case key, chosen model, rejected model, chosen prediction, rejected prediction, frame id, dataset, procedure
Pair = tuple[str, str, str, int, int, int, str, str]


class TalliedPairs(NamedTuple):
    """A study's preference pairs (``Pair`` rows, sorted), the counts a manifest reports of its judged
    outputs (outputs, chosen, rejected, correct, incorrect) and the time of its newest judgment counted."""

    pairs: list[Pair]
    counts: dict[str, int]
    newest: datetime | None


def tallied_pairs(session: Session, study_id: int, filters: ExportFilters, rules: PairRules) -> TalliedPairs:
    """The preference pairs of the study's current judgments on the cases ``filters`` admit (judgment dates
    are not known to the tallies: a date range needs ``review.preferences.judged_outputs``)."""
    if filters.dated:
        raise ValueError("tallied pairs know no judgment dates")
    good, bad = aliased(VoteTally), aliased(VoteTally)
    good_model, bad_model = aliased(Model), aliased(Model)
    chosen = verdict_terms(good.reviewers, good.correct_votes, good.best_votes, rules)[2]
    rejected = verdict_terms(bad.reviewers, bad.correct_votes, bad.best_votes, rules)[1]
    query = (
        select(
            Case.key,
            good_model.name,
            bad_model.name,
            good.prediction_id,
            bad.prediction_id,
            Case.frame_id,
            Case.dataset,
            Case.procedure,
        )
        .select_from(good)
        .join(bad, and_(bad.study_id == good.study_id, bad.case_id == good.case_id, bad.model_id != good.model_id))
        .join(Case, Case.id == good.case_id)
        .join(good_model, good_model.id == good.model_id)
        .join(bad_model, bad_model.id == bad.model_id)
        .where(good.study_id == study_id, good.reviewers > 0, bad.reviewers > 0, chosen, rejected)
    )
    is_correct, is_wrong, is_chosen = verdict_terms(
        VoteTally.reviewers, VoteTally.correct_votes, VoteTally.best_votes, rules
    )
    totals = select(
        func.count(),
        *(func.coalesce(func.sum(case((term, 1), else_=0)), 0) for term in (is_chosen, is_wrong, is_correct)),
        func.max(VoteTally.judged_at),
    ).where(VoteTally.study_id == study_id, VoteTally.reviewers > 0)
    if filters.limits_cases:
        query = query.where(good.case_id.in_(case_query(filters)))
        totals = totals.where(VoteTally.case_id.in_(case_query(filters)))
    outputs, chosen_n, rejected_n, correct_n, newest = session.execute(totals).one()
    counts = {
        "outputs": outputs,
        "chosen": chosen_n,
        "rejected": rejected_n,
        "correct": correct_n,
        "incorrect": rejected_n,  # rated incorrect is what makes an output rejected
    }
    # Sorted here rather than by the database, whose order of strings depends on its collation.
    return TalliedPairs(sorted(plain_rows(session, query)), counts, newest)
