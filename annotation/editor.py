"""What the Go Zone editor opens on: the lane's newest version, or a pre-fill from a chosen source.

Sources: "model:<name>" (the model's newest Go Zone prediction of the case: phase, first box, the four
rationale parts), "reference" (the case's current reference label) and "empty".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation.workflow import (
    TEXT_FIELDS,
    GoZoneDraft,
    VersionView,
    get_case,
    gozone_vocabulary,
    head,
    history,
    lane_of,
)
from db.errors import DomainError
from db.schema import Frame, Label, Model, Prediction, Run
from db.users import Actor, require
from models.parsing.result import ParsedOutput
from models.runner import apply_parse

EMPTY = "empty"
REFERENCE = "reference"
MODEL_PREFIX = "model:"


@dataclass(frozen=True)
class Proposal:
    """A pre-fill: where it came from, its content, and the prediction behind it (for model sources)."""

    source: str
    draft: GoZoneDraft
    prediction_id: int | None = None


@dataclass(frozen=True)
class EditorState:
    """Everything the editor shows for one case and lane; ``base_id`` is what the next save builds on."""

    case_id: int
    case_key: str
    frame: Frame
    width: int
    height: int
    lane: int
    base_id: int | None
    base_version: int | None
    status: str | None
    review_comment: str | None
    draft: GoZoneDraft
    source: str
    prediction_id: int | None
    sources: list[str]
    phases: list[tuple[str, str]]
    history: list[VersionView]


def model_proposals(session: Session, case_id: int) -> list[Proposal]:
    """Each model's newest error-free Go Zone prediction of the case, by model name."""
    rows = session.execute(
        select(Prediction, Model.name).join(Run, Prediction.run_id == Run.id).join(Model, Run.model_id == Model.id)
        .where(Prediction.case_id == case_id, Run.task == "gozone", Prediction.error.is_(None))
        .order_by(Model.name, Prediction.created_at.desc(), Prediction.id.desc())).all()
    proposals, seen = [], set()
    for prediction, name in rows:
        if name in seen:
            continue
        seen.add(name)
        proposals.append(proposal_of(prediction, name))
    return proposals


def proposal_of(prediction: Prediction, model_name: str) -> Proposal:
    """A model's Go Zone prediction as a pre-fill: its phase, first box and four rationale parts."""
    if prediction.parsed is None:
        apply_parse(prediction, prediction.run, prediction.case)
    parsed = ParsedOutput.from_json(prediction.parsed or {})
    box = parsed.boxes[0].as_box().as_tuple() if parsed.boxes else None
    texts = {name: parsed.rationale.get(name) for name in TEXT_FIELDS}
    return Proposal(MODEL_PREFIX + model_name, GoZoneDraft(parsed.phase, box, **texts), prediction.id)


def reference_proposal(session: Session, case_id: int) -> Proposal | None:
    label = session.scalar(select(Label).where(Label.case_id == case_id, Label.is_current))
    if label is None:
        return None
    return Proposal(REFERENCE, GoZoneDraft(label.phase, label.box, label.location, label.exposure,
                                           label.next_action, label.critical_risk))


def completeness(draft: GoZoneDraft) -> int:
    """How much of a Go Zone annotation a pre-fill already holds (phase, box, each text)."""
    return sum(value not in (None, "") for value in (draft.phase, draft.box, *draft.texts().values()))


def proposals(session: Session, case_id: int) -> list[Proposal]:
    """All pre-fills of a case: models first, the most complete proposal first (then by name), then the
    reference, then empty. The first is what the editor opens on."""
    found = sorted(model_proposals(session, case_id), key=lambda p: -completeness(p.draft))
    reference = reference_proposal(session, case_id)
    return [*found, *([reference] if reference else []), Proposal(EMPTY, GoZoneDraft(None, None))]


def open_editor(session: Session, actor: Actor, case_id: int, source: str | None = None) -> EditorState:
    """The editor for ``actor`` on ``case_id``: the lane's newest version when there is one and no
    ``source`` is asked for, else the pre-fill from ``source`` (default: the first model, the reference,
    or empty). The base stays the lane's newest version either way, so saving a pre-fill over existing
    work is a deliberate new version, never a silent overwrite."""
    require(actor, "annotator", "approver", "admin")
    case = get_case(session, case_id)
    lane = lane_of(session, case_id, actor.user_id)
    current = head(session, case_id, lane=lane)
    options = proposals(session, case_id)
    by_source = {p.source: p for p in options}
    if source is not None and source not in by_source:
        raise DomainError(f"There is no pre-fill {source!r} for this case; choose one of "
                          f"{', '.join(by_source)}.")
    if current is not None and source is None:
        chosen = Proposal(current.source or "edit", GoZoneDraft.of(current), current.source_prediction_id)
    else:
        chosen = by_source[source] if source else options[0]
    vocabulary = gozone_vocabulary(case)
    return EditorState(
        case_id=case.id, case_key=case.key, frame=case.frame, width=case.frame.width, height=case.frame.height, lane=lane,
        base_id=current.id if current else None, base_version=current.version if current else None,
        status=current.status if current else None,
        review_comment=current.review_comment if current else None, draft=chosen.draft, source=chosen.source,
        prediction_id=chosen.prediction_id, sources=[p.source for p in options],
        phases=[(p.id, p.name) for p in vocabulary.phases],
        history=history(session, actor, case_id, lane=lane))
