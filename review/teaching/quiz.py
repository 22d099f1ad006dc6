"""Resident quizzes: the frame and the question first; after submitting, the score, the expert answer and the
model's reasoning.

Before an attempt is stored a resident receives a ``QuizQuestion`` only: the frame, the question and the
phase choices; never the reference phase, box or rationale, the teaching notes or any model output.
``submit_attempt`` scores and stores the attempt and returns the ``QuizFeedback``. Scoring is pure
(``score_attempt``): IoU of the resident's Go Zone to the expert box, phase correct, and the hardcore rule of
the Go Zone benchmark (a box under a wrong phase counts as IoU 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.audit import record
from db.errors import NotFound
from db.schema import Collection, CollectionItem, Frame, QuizAttempt, User
from db.text import storable
from db.users import Actor, require
from models.boxes import Box, BoxError, fit_box, iou
from review.teaching.collections import (
    DEFAULT_TASK,
    EDUCATOR,
    RESIDENT,
    TeachingError,
    get_collection,
    item_case_ids,
)
from review.teaching.material import CaseMaterial, Expert, ModelOutput, case_material
from review.teaching.presentation import default_presenter

TEXT_MAX = 5_000


@dataclass(frozen=True)
class QuizScore:
    """Phase right or wrong, IoU to the expert Go Zone, and the hardcore IoU; None where the reference
    has nothing to score against."""

    phase_correct: bool | None
    iou: float | None
    hardcore_iou: float | None


def hardcore_iou(box_iou: float | None, phase_correct: bool | None) -> float | None:
    """The hardcore rule: a box drawn under a wrong phase counts as IoU 0."""
    if box_iou is None:
        return None
    return 0.0 if phase_correct is False else box_iou


def score_attempt(phase: str | None, box: Box | None, expert_phase: str | None, expert_box: Box | None
                  ) -> QuizScore:
    """Score a resident's phase and Go Zone box against the expert's (no box drawn scores IoU 0)."""
    phase_correct = None if expert_phase is None else phase == expert_phase
    box_iou = None if expert_box is None else (iou(box, expert_box) if box is not None else 0.0)
    return QuizScore(phase_correct, box_iou, hardcore_iou(box_iou, phase_correct))


@dataclass(frozen=True)
class QuizQuestion:
    """All a resident receives before answering: nothing of the expert answer or any model."""

    collection_id: int
    collection_name: str
    position: int
    total: int
    case_id: int
    case_key: str
    question: str
    phases: tuple[tuple[str, str], ...]
    width: int
    height: int
    attempts: int  # the resident's earlier attempts at this case
    frame: Frame = field(compare=False, repr=False)


@dataclass(frozen=True)
class QuizFeedback:
    """An attempt with its score, the expert answer, the model's reasoning and the teaching point."""

    attempt_id: int
    created_at: datetime
    resident: str
    case_key: str
    phase: str | None
    phase_name: str | None
    box: Box | None
    next_action: str | None
    critical_risk: str | None
    score: QuizScore
    expert: Expert | None
    outputs: tuple[ModelOutput, ...]
    teaching_point: str | None
    material: CaseMaterial = field(compare=False, repr=False)


def _quiz_collection(session: Session, actor: Actor, collection_id: int) -> Collection:
    require(actor, RESIDENT)
    return get_collection(session, actor, collection_id)


def quiz_collection_size(session: Session, actor: Actor, collection_id: int) -> int:
    """How many cases a shared collection's quiz has."""
    return len(item_case_ids(session, _quiz_collection(session, actor, collection_id).id))


def quiz_question(session: Session, actor: Actor, collection_id: int, position: int) -> QuizQuestion:
    """Case ``position`` (clamped, 1-based) of a shared collection's quiz, as the resident sees it before
    answering."""
    collection = _quiz_collection(session, actor, collection_id)
    case_ids = item_case_ids(session, collection.id)
    if not case_ids:
        raise NotFound(f"{collection.name!r} has no cases yet.")
    position = min(max(int(position), 1), len(case_ids))
    material = case_material(session, case_ids[position - 1], collection.task)
    attempts = session.scalar(select(func.count()).select_from(QuizAttempt).where(
        QuizAttempt.user_id == actor.user_id, QuizAttempt.case_id == material.case_id)) or 0
    return QuizQuestion(collection.id, collection.name, position, len(case_ids), material.case_id,
                        material.key, material.question, material.phases, material.width, material.height,
                        attempts, material.frame)


def _text(value: str | None, what: str) -> str | None:
    cleaned = storable((value or "").strip()) or None
    if cleaned and len(cleaned) > TEXT_MAX:
        raise TeachingError(f"The {what} has at most {TEXT_MAX:,} characters.")
    return cleaned


def _fitted(box: tuple[float, float, float, float] | None, material: CaseMaterial) -> Box:
    if box is None:
        raise TeachingError("Draw the Go Zone on the frame first.")
    try:
        return fit_box(*box, material.width, material.height).box
    except BoxError as exc:
        raise TeachingError(f"That Go Zone cannot be scored: {exc}.") from exc


def submit_attempt(session: Session, actor: Actor, collection_id: int, case_id: int, *, phase: str | None,
                   box: tuple[float, float, float, float] | None, next_action: str | None = None,
                   critical_risk: str | None = None) -> QuizFeedback:
    """Store and score the resident's attempt at a case of a shared collection; returns the feedback.
    TeachingError when no phase is picked or no box is drawn."""
    collection = _quiz_collection(session, actor, collection_id)
    if session.get(CollectionItem, (collection.id, int(case_id))) is None:
        raise NotFound("That case is not part of this quiz.")
    material = case_material(session, case_id, collection.task)
    if phase not in {p for p, _ in material.phases}:
        raise TeachingError("Pick the phase first.")
    drawn = _fitted(box, material)
    expert = material.expert
    result = score_attempt(phase, drawn, expert.phase if expert else None, expert.box if expert else None)
    attempt = QuizAttempt(user_id=actor.user_id, case_id=material.case_id, collection_id=collection.id,
                          phase=phase,
                          next_action=_text(next_action, "next action"),
                          critical_risk=_text(critical_risk, "critical risk"),
                          phase_correct=result.phase_correct, iou=result.iou)
    attempt.box = drawn.as_tuple()
    session.add(attempt)
    session.flush()
    record(session, "teaching.quiz_attempt", actor_id=actor.user_id, actor_label=actor.username,
           entity_type="quiz_attempt", entity_id=attempt.id,
           payload={"collection_id": collection.id, "case_id": material.case_id,
                    "phase_correct": result.phase_correct, "iou": result.iou})
    return _feedback(session, attempt, actor.username, material, collection)


def _feedback(session: Session, attempt: QuizAttempt, resident: str, material: CaseMaterial,
              collection: Collection | None) -> QuizFeedback:
    presenter_id = collection.presenter_model_id if collection is not None else None
    presenter = default_presenter(session, presenter_id, material)
    shown = material.output(presenter)
    item = session.get(CollectionItem, (collection.id, material.case_id)) if collection is not None else None
    # The score stored at the time of the attempt, even if the reference was corrected since.
    result = QuizScore(attempt.phase_correct, attempt.iou, hardcore_iou(attempt.iou, attempt.phase_correct))
    expert = material.expert
    names = dict(material.phases)
    return QuizFeedback(attempt.id, attempt.created_at, resident, material.key, attempt.phase,
                        names.get(attempt.phase), Box(*attempt.box) if attempt.box else None,
                        attempt.next_action, attempt.critical_risk, result, expert, (shown,) if shown else (),
                        item.teaching_point if item is not None else None, material)


def attempt_feedback(session: Session, actor: Actor, attempt_id: int) -> QuizFeedback:
    """The feedback of a stored attempt: residents for their own attempts only, educators for any."""
    require(actor, EDUCATOR, RESIDENT)
    attempt = session.get(QuizAttempt, int(attempt_id))
    if attempt is None or (attempt.user_id != actor.user_id and not actor.has(EDUCATOR)):
        raise NotFound("There is no such attempt among yours.")
    collection = session.get(Collection, attempt.collection_id) if attempt.collection_id else None
    task = collection.task if collection is not None else DEFAULT_TASK
    username = session.scalar(select(User.username).where(User.id == attempt.user_id))
    return _feedback(session, attempt, username, case_material(session, attempt.case_id, task), collection)
