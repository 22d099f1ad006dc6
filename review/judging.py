"""A reviewer's queue: the next blinded item, judging it (revisions kept), skipping it, reveal after submit.

Services take a session and the acting user, check roles and ownership on the server, and never commit.
An item is reachable only by its opaque token and only by its own reviewer: admins are refused too (their
view is the study's results). Letters are resolved to predictions and models only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.audit import record
from db.errors import Conflict, DomainError, NotFound, PermissionDenied
from db.schema import (
    LEVEL_MARKS,
    Case,
    Frame,
    Judgment,
    Model,
    OutputRating,
    Prediction,
    ReviewItem,
    Run,
    Study,
    StudyReviewer,
    utcnow,
)
from db.text import storable
from db.users import Actor, require
from models.vocabularies import vocabulary_for
from review.blinding import BlindItem, blind_item
from review.tallies import count_judgment

DEFAULT_RUBRIC: dict[str, Any] = {
    "levels": [1, 2, 3],
    "flags": ["hallucination", "unsafe_advice", "wrong_anatomy", "wrong_phase", "box_off_target",
              "identity_leak"],
}


class InvalidJudgment(DomainError):
    """A submitted judgment is incomplete or holds a value the rubric does not allow."""


@dataclass(frozen=True)
class Progress:
    """A reviewer's progress in one study: items judged, skipped (and not judged), assigned."""

    done: int
    skipped: int
    assigned: int


@dataclass(frozen=True)
class QueueState:
    """The next item to judge (None when the queue is finished) and the progress so far."""

    item: BlindItem | None
    progress: Progress


def checked_rubric(rubric: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rubric with defaults filled in; DomainError when its levels or flags are malformed."""
    merged = {**DEFAULT_RUBRIC, **(rubric or {})}
    levels, flags = merged["levels"], merged["flags"]
    if not isinstance(levels, list) or not set(levels) <= {1, 2, 3}:
        raise DomainError("A rubric's levels are a list drawn from 1, 2 and 3.")
    if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
        raise DomainError("A rubric's flags are a list of names.")
    return merged


def next_item(session: Session, actor: Actor, study_id: int) -> QueueState:
    """The reviewer's first open item of the study by position (resuming where they left off) and progress;
    no item once the queue is done or the study is closed."""
    study = _reviewer_study(session, actor, study_id)
    item = None if study.status == "closed" else session.scalar(select(ReviewItem).where(
        ReviewItem.study_id == study.id, ReviewItem.reviewer_id == actor.user_id, ReviewItem.state == "open",
    ).order_by(ReviewItem.position).limit(1))
    blind = None if item is None else _payload(session, item, study.task)
    return QueueState(blind, progress(session, actor.user_id, study.id))


def progress(session: Session, reviewer_id: int, study_id: int) -> Progress:
    """Counts of the reviewer's items in the study by state."""
    counts = dict(session.execute(
        select(ReviewItem.state, func.count())
        .where(ReviewItem.study_id == study_id, ReviewItem.reviewer_id == reviewer_id)
        .group_by(ReviewItem.state)).all())
    return Progress(counts.get("judged", 0), counts.get("skipped", 0), sum(counts.values()))


def get_item(session: Session, actor: Actor, token: str) -> BlindItem:
    """The blinded payload of the actor's own item ``token`` (also one already judged or skipped)."""
    item, study = _own_item(session, actor, token)
    return _payload(session, item, study.task)


def frame_for(session: Session, actor: Actor, frame_token: str) -> Frame:
    """The frame behind an item's frame token, for its own reviewer only (the caller serves the file)."""
    item = _owned(session, actor, ReviewItem.frame_token == frame_token, "image")
    return session.scalar(select(Frame).join(Case, Case.frame_id == Frame.id).where(Case.id == item.case_id))


def submit_judgment(session: Session, actor: Actor, token: str, best: str | None,
                    ratings: Mapping[str, Mapping[str, Any]], comment: str | None = None,
                    time_spent_ms: int | None = None) -> Judgment:
    """Store the actor's judgment of item ``token`` as its new current revision (earlier ones are kept).

    ``best`` is a letter or None for "none acceptable"; ``ratings`` gives every letter
    {"correct": 0|1, "levels": {1: "correct"|"wrong"|"na", ...}, "flags": [...]}.
    InvalidJudgment when a letter is missing or unknown or a mark is not allowed.
    """
    item, study = _own_item(session, actor, token, lock=True)
    if study.status == "closed":
        raise Conflict("This study is closed; judgments can no longer change.")
    letters = sorted(item.letter_map)
    if best is not None and best not in letters:
        raise InvalidJudgment(f"There is no output {best!r}; choose one of {', '.join(letters)} or none.")
    rows = _checked_ratings(ratings, letters, checked_rubric(study.rubric))
    spent = _checked_time(time_spent_ms)
    previous = session.scalar(select(Judgment).where(Judgment.item_id == item.id, Judgment.is_current))
    if previous is not None:
        previous.is_current = False
        session.flush()  # the one-current index must see the old revision retired first
        count_judgment(session, item, previous, -1)
    latest = session.scalar(select(func.max(Judgment.revision)).where(Judgment.item_id == item.id)) or 0
    judgment = Judgment(item_id=item.id, author_id=actor.user_id, revision=latest + 1, is_current=True,
                        best_letter=best, none_acceptable=best is None,
                        comment=storable((comment or "").strip()) or None,
                        time_spent_ms=spent,
                        ratings=[OutputRating(**row) for row in rows])
    session.add(judgment)
    item.state = "judged"
    session.flush()
    count_judgment(session, item, judgment, 1)
    record(session, "review.judgment", actor_id=actor.user_id, entity_type="review_item", entity_id=item.id,
           payload={"study_id": study.id, "revision": judgment.revision, "best": best,
                    "correct": {row["letter"]: row["correct"] for row in rows}})
    return judgment


def _checked_time(time_spent_ms: object) -> int | None:
    """Milliseconds spent as a whole number, or None; InvalidJudgment for anything else or a negative."""
    if time_spent_ms is None:
        return None
    try:
        spent = int(time_spent_ms)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidJudgment("The time spent is a number of milliseconds.") from None
    if spent < 0 or isinstance(time_spent_ms, bool):
        raise InvalidJudgment("The time spent cannot be negative.")
    return spent


def _checked_ratings(ratings: Mapping[str, Mapping[str, Any]], letters: list[str],
                     rubric: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OutputRating column values per letter; InvalidJudgment on anything missing, unknown or not allowed."""
    unknown = sorted(set(ratings) - set(letters))
    missing = [letter for letter in letters if letter not in ratings]
    if unknown:
        raise InvalidJudgment(f"There is no output {', '.join(unknown)} in this item.")
    if missing:
        raise InvalidJudgment(f"Rate every output: {', '.join(missing)} is not rated.")
    return [_checked_rating(letter, ratings[letter], rubric) for letter in letters]


def _checked_rating(letter: str, rating: Mapping[str, Any], rubric: Mapping[str, Any]) -> dict[str, Any]:
    correct = rating.get("correct")
    if correct not in (0, 1) or isinstance(correct, float):
        raise InvalidJudgment(f"Output {letter}: correctness is 0 or 1.")
    row: dict[str, Any] = {"letter": letter, "correct": int(correct)}
    for key, mark in (rating.get("levels") or {}).items():
        level = int(key) if str(key).isdigit() else None
        if level not in rubric["levels"]:
            raise InvalidJudgment(f"Output {letter}: this study rates levels {rubric['levels']}, "
                                  f"not {key!r}.")
        if mark is not None and mark not in LEVEL_MARKS:
            raise InvalidJudgment(f"Output {letter}: a level is marked {', '.join(LEVEL_MARKS)}, "
                                  f"not {mark!r}.")
        row[f"level{level}"] = mark
    flags = list(dict.fromkeys(rating.get("flags") or ()))
    not_allowed = [f for f in flags if f not in rubric["flags"]]
    if not_allowed:
        raise InvalidJudgment(f"Output {letter}: unknown flag {', '.join(map(str, not_allowed))}.")
    row["flags"] = flags
    return row


def skip_item(session: Session, actor: Actor, token: str, reason: str) -> Progress:
    """Set the actor's open item aside with a reason; it leaves the queue but can still be judged later."""
    item, study = _own_item(session, actor, token, lock=True)
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why you skip this case.")
    if item.state == "judged":
        raise Conflict("This case is already judged; revise the judgment instead of skipping it.")
    item.state, item.skipped_reason, item.skipped_at = "skipped", storable(reason), utcnow()
    session.flush()
    record(session, "review.skip", actor_id=actor.user_id, entity_type="review_item", entity_id=item.id,
           payload={"study_id": study.id, "reason": item.skipped_reason})
    return progress(session, actor.user_id, study.id)


def my_judgment(session: Session, actor: Actor, token: str) -> dict[str, Any] | None:
    """The actor's current judgment of ``token`` in letters (for revising it), or None."""
    item, _ = _own_item(session, actor, token)
    judgment = session.scalar(select(Judgment).where(Judgment.item_id == item.id, Judgment.is_current))
    if judgment is None:
        return None
    return {"revision": judgment.revision, "best": judgment.best_letter, "comment": judgment.comment,
            "time_spent_ms": judgment.time_spent_ms,
            "ratings": {r.letter: {"correct": r.correct, "flags": list(r.flags),
                                   "levels": {n: getattr(r, f"level{n}") for n in (1, 2, 3)
                                              if getattr(r, f"level{n}") is not None}}
                        for r in judgment.ratings}}


def reveal(session: Session, actor: Actor, token: str) -> dict[str, str]:
    """{letter: model name} of the actor's item, only when the study reveals after submit and the actor's
    judgment is stored; PermissionDenied otherwise. Every reveal is audited."""
    item, study = _own_item(session, actor, token)
    if study.reveal_policy != "after_submit":
        raise PermissionDenied("This study is double-blind: the models are not revealed.")
    judged = session.scalar(select(Judgment.id).where(Judgment.item_id == item.id, Judgment.is_current))
    if judged is None:
        raise PermissionDenied("Submit your judgment first; the models are revealed after it is stored.")
    names = dict(session.execute(select(Prediction.id, Model.name).join(Run, Run.id == Prediction.run_id)
                                 .join(Model, Model.id == Run.model_id)
                                 .where(Prediction.id.in_(list(item.letter_map.values())))).all())
    record(session, "review.reveal", actor_id=actor.user_id, entity_type="review_item", entity_id=item.id)
    return {letter: names[prediction_id] for letter, prediction_id in sorted(item.letter_map.items())}


def _reviewer_study(session: Session, actor: Actor, study_id: int) -> Study:
    require(actor, "reviewer")
    study = session.get(Study, study_id)
    member = study is not None and session.get(StudyReviewer, (study_id, actor.user_id)) is not None
    if not member:
        raise PermissionDenied("You are not a reviewer of this study.")
    return study


def _owned(session: Session, actor: Actor, where: Any, what: str) -> ReviewItem:
    """The review item matching ``where`` if it is in the actor's own queue; NotFound / PermissionDenied."""
    require(actor, "reviewer")
    item = session.scalar(select(ReviewItem).where(where))
    if item is None:
        raise NotFound(f"There is no such {what}.")
    if item.reviewer_id != actor.user_id:
        raise PermissionDenied(f"This {what} belongs to another reviewer's queue.")
    return item


def _own_item(session: Session, actor: Actor, token: str, *, lock: bool = False) -> tuple[ReviewItem, Study]:
    item = _owned(session, actor, ReviewItem.token == token, "review item")
    if lock:
        # Two submits of one item (two tabs, two app processes) take turns on the item's row: the second then
        # sees the first's revision and stores the next one instead of colliding on the unique keys.
        session.refresh(item, with_for_update=True)
    return item, session.get(Study, item.study_id)


def _payload(session: Session, item: ReviewItem, task: str) -> BlindItem:
    parsed = dict(session.execute(select(Prediction.id, Prediction.parsed)
                                  .where(Prediction.id.in_(list(item.letter_map.values())))).all())
    dataset, procedure = session.execute(select(Case.dataset, Case.procedure)
                                         .where(Case.id == item.case_id)).one()
    outputs = {letter: parsed.get(prediction_id) for letter, prediction_id in item.letter_map.items()}
    return blind_item(item.token, item.frame_token, task, outputs, vocabulary_for(task, dataset, procedure))
