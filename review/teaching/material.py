"""What a teaching case shows: the question, the expert reference (phase, Go Zone box, rationale) and each
model's stored answer for the collection's task (reasoning by level, answer, boxes, rationale, scores).

Read-only and free of permission checks: ``presentation`` and ``quiz`` decide who may see which part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.schema import Case, Frame, Label, Model, Prediction, Run
from models.boxes import Box
from models.compare import case_reference, score
from models.parsing import RATIONALE_PARTS, ParsedOutput
from models.runner import apply_parse
from models.vocabularies import Vocabulary, vocabulary_for
from review.blinding import QUESTIONS


@dataclass(frozen=True)
class Expert:
    """The current reference label of a case: phase (id and name), Go Zone box, the rationale parts."""

    phase: str | None
    phase_name: str | None
    box: Box | None
    rationale: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelOutput:
    """One model's stored answer to the case, parsed and scored against the reference."""

    model: str
    color: str | None
    levels: dict[int, str]
    thinking: str | None
    answer: str | None
    phase: str | None
    phase_name: str | None
    boxes: tuple[Box, ...]
    rationale: dict[str, str]
    iou: float | None = None
    phase_correct: bool | None = None


@dataclass(frozen=True)
class CaseMaterial:
    """Everything a teaching case can show, before anyone decides what is shown."""

    case_id: int
    key: str
    task: str
    width: int
    height: int
    question: str
    phases: tuple[tuple[str, str], ...]  # (id, name) of the task's phase vocabulary
    expert: Expert | None
    outputs: tuple[ModelOutput, ...]
    frame: Frame = field(compare=False, repr=False)

    def output(self, model: str | None) -> ModelOutput | None:
        """The output of ``model``, or None when it has none for this case."""
        return next((o for o in self.outputs if o.model == model), None)


def _phase_name(vocabulary: Vocabulary, phase: str | None) -> str | None:
    known = {p.id: p.name for p in vocabulary.phases}
    return known.get(phase) if phase else None


def expert_of(session: Session, case: Case, vocabulary: Vocabulary) -> Expert | None:
    """The case's current reference label as an Expert, or None when it has none."""
    reference = case_reference(session, case, vocabulary)
    if reference is None:
        return None
    label = session.scalar(select(Label).where(Label.case_id == case.id, Label.is_current))
    rationale = {part: getattr(label, part) for part in RATIONALE_PARTS if getattr(label, part)}
    return Expert(reference.phase, reference.phase_name, reference.box, rationale)


def _latest_predictions(session: Session, case_id: int, task: str) -> list[tuple[Prediction, Run, Model]]:
    """Per model, its newest run's prediction for the case and task (errors left out), by model name."""
    newest = (select(Run.model_id, func.max(Run.id).label("run_id"))
              .join(Prediction, Prediction.run_id == Run.id)
              .where(Run.task == task, Prediction.case_id == case_id, Prediction.error.is_(None))
              .group_by(Run.model_id).subquery())
    rows = session.execute(select(Prediction, Run, Model).join(Run, Run.id == Prediction.run_id)
                           .join(Model, Model.id == Run.model_id)
                           .join(newest, newest.c.run_id == Run.id)
                           .where(Prediction.case_id == case_id).order_by(Model.name)).all()
    return [(p, r, m) for p, r, m in rows]


def _output(prediction: Prediction, run: Run, model: Model, case: Case, task: str, vocabulary: Vocabulary,
            session: Session) -> ModelOutput:
    if prediction.parsed is None:  # imported text not parsed yet
        apply_parse(prediction, run, case)
    parsed = ParsedOutput.from_json(prediction.parsed)
    box_iou, phase_correct = score(parsed, task, case_reference(session, case, vocabulary))
    return ModelOutput(model.name, model.color, dict(parsed.levels), parsed.thinking, parsed.answer,
                       parsed.phase, _phase_name(vocabulary, parsed.phase),
                       tuple(b.as_box() for b in parsed.boxes), dict(parsed.rationale), box_iou,
                       phase_correct)


def case_material(session: Session, case_id: int, task: str) -> CaseMaterial:
    """The question, reference and stored model outputs of case ``case_id`` for ``task``; NotFound if gone."""
    case = session.get(Case, int(case_id))
    if case is None:
        raise NotFound(f"There is no case {case_id}; it may have been deleted.")
    vocabulary = vocabulary_for(task, case.dataset, case.procedure)
    outputs = tuple(_output(p, r, m, case, task, vocabulary, session)
                    for p, r, m in _latest_predictions(session, case.id, task))
    return CaseMaterial(case.id, case.key, task, case.frame.width, case.frame.height,
                        QUESTIONS.get(task, "What does this frame show?"),
                        tuple((p.id, p.name) for p in vocabulary.phases),
                        expert_of(session, case, vocabulary), outputs, case.frame)
