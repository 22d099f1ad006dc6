"""What a reviewer's screen shows: the studies they review, and one item of their queue with its place in
the queue, their current judgment and their progress. Read-only, one call per screen of the Review tab.

Built on ``review.judging`` (which checks roles and ownership): the only handles are opaque item tokens,
and a position is the item's place in the reviewer's own queue (1-based), never a database id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound, PermissionDenied
from db.schema import ReviewItem, Study, StudyReviewer
from db.users import Actor, require
from review.blinding import BlindItem
from review.judging import Progress, checked_rubric, get_item, my_judgment, next_item


@dataclass(frozen=True)
class ReviewerStudy:
    """A study as its reviewer sees it: no models, no other reviewers."""

    id: int
    name: str
    task: str
    status: str
    levels: tuple[int, ...]
    flags: tuple[str, ...]
    reveal_after_submit: bool


@dataclass(frozen=True)
class QueueEntry:
    """One item of the reviewer's queue: its 1-based place, its opaque token and its state."""

    position: int
    token: str
    state: str


@dataclass(frozen=True)
class Screen:
    """One item shown to its reviewer (None when the queue is finished), with its queue entry, the
    reviewer's current judgment of it (letters only) and the whole queue with progress."""

    study: ReviewerStudy
    item: BlindItem | None
    entry: QueueEntry | None
    judgment: dict[str, Any] | None
    entries: tuple[QueueEntry, ...]
    progress: Progress


def my_studies(session: Session, actor: Actor) -> list[ReviewerStudy]:
    """The studies the actor reviews, newest first."""
    require(actor, "reviewer")
    studies = session.scalars(select(Study).join(StudyReviewer, StudyReviewer.study_id == Study.id)
                              .where(StudyReviewer.user_id == actor.user_id)
                              .order_by(Study.created_at.desc(), Study.id.desc()))
    return [_as_reviewer_study(study) for study in studies]


def screen(session: Session, actor: Actor, study_id: int, token: str | None = None, *,
           step: int = 0) -> Screen:
    """The screen for the actor's item ``token`` of ``study_id``; without a token the next open item (where
    the reviewer left off). ``step`` moves through the reviewer's queue from ``token`` (-1: the item before
    it; from the finished queue, the last item), to revise a judgment or return to a skipped item."""
    study = _member_study(session, actor, study_id)
    entries = _entries(session, actor.user_id, study_id)
    if token is None and step == 0:
        item = next_item(session, actor, study_id).item
        token = item.token if item is not None else None
    else:
        if token is not None:
            get_item(session, actor, token)  # refuses another reviewer's token before anything is said
        token = _stepped(entries, token, step)
        item = get_item(session, actor, token) if token is not None else None
    entry = next((e for e in entries if e.token == token), None)
    judgment = my_judgment(session, actor, token) if entry is not None and entry.state == "judged" else None
    return Screen(study, item, entry, judgment, entries, _progress(entries))


def _stepped(entries: tuple[QueueEntry, ...], token: str | None, step: int) -> str | None:
    """The token ``step`` places from ``token`` in the queue (clamped to its ends); from None, counted
    from past the end."""
    if not entries:
        return None
    index = len(entries) if token is None else next(
        (i for i, e in enumerate(entries) if e.token == token), None)
    if index is None:
        raise NotFound("There is no such item in this study.")
    return entries[min(max(index + step, 0), len(entries) - 1)].token


def _entries(session: Session, reviewer_id: int, study_id: int) -> tuple[QueueEntry, ...]:
    rows = session.execute(select(ReviewItem.token, ReviewItem.state)
                           .where(ReviewItem.study_id == study_id, ReviewItem.reviewer_id == reviewer_id)
                           .order_by(ReviewItem.position))
    return tuple(QueueEntry(place, token, state) for place, (token, state) in enumerate(rows, start=1))


def _progress(entries: tuple[QueueEntry, ...]) -> Progress:
    states = [e.state for e in entries]
    return Progress(states.count("judged"), states.count("skipped"), len(states))


def _member_study(session: Session, actor: Actor, study_id: int) -> ReviewerStudy:
    require(actor, "reviewer")
    study = session.get(Study, study_id)
    if study is None or session.get(StudyReviewer, (study_id, actor.user_id)) is None:
        raise PermissionDenied("You are not a reviewer of this study.")
    return _as_reviewer_study(study)


def _as_reviewer_study(study: Study) -> ReviewerStudy:
    rubric = checked_rubric(study.rubric)
    return ReviewerStudy(study.id, study.name, study.task, study.status, tuple(rubric["levels"]),
                         tuple(rubric["flags"]), study.reveal_policy == "after_submit")
