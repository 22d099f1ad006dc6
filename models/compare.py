"""Comparing models on one case: what each chosen model answered for a task (from the prediction cache when
it can), scored against the case's current reference label.

Pure of any UI: ``prepare_comparison`` reads and caches in the caller's session; running the models that are
not cached yet (streaming where the backend can) is ``models.compare_run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.cases import CaseFilter, find_case_ids
from db.errors import DomainError
from db.frames import FrameStore
from db.schema import Case, CaseTag, Label, Prediction
from models.backends.base import ModelSpec
from models.boxes import Box, iou
from models.parsing import ParsedOutput
from models.prompts import TEMPLATES, template_for
from models.runner import apply_parse, ensure_model, ensure_run, split_cached
from models.vocabularies import Vocabulary, vocabulary_for

TASK_LABELS = {"phase": "Phase", "triplet": "Triplet", "action": "Action", "cvs": "CVS",
               "localization": "Localization", "gozone": "Go Zone (phase-then-go)"}
# Tasks whose answer is a phase, scored against the reference label's phase.
PHASE_TASKS = frozenset({"phase", "gozone"})
# The reference label holds a Go Zone box: only Go Zone answers are scored by IoU against it.
REFERENCE_BOX_TASKS = frozenset({"gozone"})
CASE_LIST_LIMIT = 500

STATUSES = ("cached", "predicted", "pending", "loading", "streaming", "error")


class CompareError(DomainError):
    """The comparison cannot be made (unknown case or task, no model); the message says why."""


@dataclass(frozen=True)
class Reference:
    """The case's current reference label, as far as the comparison uses it."""

    source: str
    phase: str | None = None
    phase_name: str | None = None
    box: Box | None = None


@dataclass(frozen=True)
class ModelView:
    """One model's side of the comparison: its parsed answer, or where it is on the way to one."""

    model: str
    color: str
    backend: str
    status: str
    run_id: int
    parsed: ParsedOutput | None = None
    partial: str = ""
    error: str | None = None
    latency_ms: float | None = None
    iou: float | None = None
    phase_correct: bool | None = None

    @property
    def boxes(self) -> list[Box]:
        return [b.as_box() for b in self.parsed.boxes] if self.parsed else []

    @property
    def finished(self) -> bool:
        return self.status in {"cached", "predicted", "error"}


@dataclass(frozen=True)
class CaseComparison:
    """The chosen models on one case for one task, in the order they were chosen."""

    case_id: int
    case_key: str
    dataset: str
    procedure: str
    task: str
    width: int
    height: int
    reference: Reference | None
    views: tuple[ModelView, ...]
    image: Image.Image | None = field(default=None, compare=False, repr=False)

    def view(self, model: str) -> ModelView:
        return next(v for v in self.views if v.model == model)

    def with_view(self, view: ModelView) -> CaseComparison:
        return replace(self, views=tuple(view if v.model == view.model else v for v in self.views))

    @property
    def pending(self) -> list[str]:
        return [v.model for v in self.views if v.status == "pending"]

    @property
    def vocabulary(self) -> Vocabulary:
        return vocabulary_for(self.task, self.dataset, self.procedure)


def case_reference(session: Session, case: Case, vocabulary: Vocabulary) -> Reference | None:
    """The current reference label of ``case`` (phase named in ``vocabulary`` when it knows it), or None."""
    label = session.scalar(select(Label).where(Label.case_id == case.id, Label.is_current))
    if label is None:
        return None
    phase = vocabulary.normalize_phase(label.phase)
    name = vocabulary.phase(phase).name if phase is not None else None
    return Reference(source=label.source, phase=phase or label.phase, phase_name=name,
                     box=Box(*label.box) if label.box is not None else None)


def score(parsed: ParsedOutput, task: str, reference: Reference | None) -> tuple[float | None, bool | None]:
    """(IoU of the first answer box to the reference Go Zone, whether the phase matches the reference);
    None where the task or the reference does not allow the comparison."""
    if reference is None:
        return None, None
    box_iou = None
    if task in REFERENCE_BOX_TASKS and reference.box is not None:
        box_iou = iou(parsed.boxes[0].as_box(), reference.box) if parsed.boxes else 0.0
    phase_correct = None
    if task in PHASE_TASKS and reference.phase_name is not None:  # a phase of the task's vocabulary
        phase_correct = parsed.phase == reference.phase
    return box_iou, phase_correct


def view_of(prediction: Prediction, spec: ModelSpec, comparison: CaseComparison, status: str) -> ModelView:
    """The view of a stored prediction (its error, or its parsed answer scored against the reference)."""
    base = ModelView(spec.name, spec.color, spec.backend, status, prediction.run_id,
                     latency_ms=prediction.latency_ms)
    if prediction.error is not None:
        return replace(base, status="error", error=prediction.error)
    if prediction.parsed is None:  # imported text not parsed yet
        apply_parse(prediction, prediction.run, prediction.case)
    parsed = ParsedOutput.from_json(prediction.parsed)
    box_iou, phase_correct = score(parsed, comparison.task, comparison.reference)
    return replace(base, parsed=parsed, iou=box_iou, phase_correct=phase_correct)


def prepare_comparison(session: Session, store: FrameStore, case_id: int, specs: Sequence[ModelSpec],
                       task: str) -> CaseComparison:
    """Each model's cached answer for the case (status "cached"), or a "pending" view to be run.

    Registers the models and their runs (the cache keys) in ``session``; never commits.
    Raises CompareError."""
    if task not in TEMPLATES:
        raise CompareError(f"unknown task {task!r}; choose one of {', '.join(TASK_LABELS)}")
    if not specs:
        raise CompareError("choose at least one model")
    case = session.get(Case, case_id)
    if case is None:
        raise CompareError(f"no case with id {case_id}; it may have been deleted")
    try:
        image = store.open_image(case.frame)
    except OSError as exc:
        raise CompareError(f"the frame of case {case.key} cannot be read ({exc})") from exc
    comparison = CaseComparison(case.id, case.key, case.dataset, case.procedure, task, case.frame.width,
                                case.frame.height, None, (), image)
    comparison = replace(comparison, reference=case_reference(session, case, comparison.vocabulary))
    template = template_for(task)
    views = []
    for spec in specs:
        run = ensure_run(session, ensure_model(session, spec), task, template.version, spec.params(),
                         source=spec.backend)
        cached, _ = split_cached(session, run, [case])
        if cached:
            prediction = session.scalar(select(Prediction).where(Prediction.run_id == run.id,
                                                                 Prediction.case_id == case.id))
            views.append(view_of(prediction, spec, comparison, "cached"))
        else:
            views.append(ModelView(spec.name, spec.color, spec.backend, "pending", run.id))
    return replace(comparison, views=tuple(views))


# --- choosing cases ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FilterOptions:
    """The values each case filter can take, as present in the database."""

    datasets: list[str]
    procedures: list[str]
    phases: list[str]
    splits: list[str]
    tags: list[str]


def filter_options(session: Session) -> FilterOptions:
    def distinct(column, *where) -> list[str]:  # noqa: ANN001, ANN002
        return [v for v in session.scalars(select(column).where(*where).distinct().order_by(column)) if v]

    return FilterOptions(distinct(Case.dataset), distinct(Case.procedure),
                         distinct(Label.phase, Label.is_current), distinct(Case.split), distinct(CaseTag.tag))


def matching_cases(session: Session, case_filter: CaseFilter) -> list[tuple[int, str]]:
    """(case id, key) of the cases matching ``case_filter``, in the filter's order, at most
    CASE_LIST_LIMIT of them."""
    if case_filter.limit is None:
        case_filter = replace(case_filter, limit=CASE_LIST_LIMIT)
    ids = list(find_case_ids(session, case_filter))
    keys = {row.id: row.key for row in session.execute(select(Case.id, Case.key).where(Case.id.in_(ids)))}
    return [(i, keys[i]) for i in ids]

