"""Approval of submitted Go Zone versions by a chief surgeon (the approver role).

An approver sees the submitted version against the model's proposal, approves or rejects it with a comment;
a rejected version goes back to its lane (the annotator saves a new version on top). An approved version
becomes the case's current reference label, its source recorded as ``annotation:<id>``.

Consensus (agreement studies, several lanes on a case): approval needs every lane's newest version
submitted, all phases equal and every pairwise IoU at least the threshold; all of them are then approved
and the chosen one becomes the reference.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from itertools import combinations

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from annotation.editor import MODEL_PREFIX, proposal_of
from annotation.workflow import TEXT_FIELDS, GoZoneDraft, box_iou, get_case, head
from db import audit
from db.errors import Conflict, DomainError, NotFound, PermissionDenied
from db.schema import Annotation, AnnotationAssignment, Case, Label, Prediction, User
from db.schema.base import utcnow
from db.text import storable
from db.users import Actor, require

APPROVER_ROLES = ("approver", "admin")
MAX_COMMENT_CHARS = 5_000
SOURCE_PREFIX = "annotation:"


@dataclass(frozen=True)
class LaneVersion:
    """A lane's newest version in the agreement view."""

    annotation_id: int
    lane: int
    author: str
    status: str
    draft: GoZoneDraft


@dataclass(frozen=True)
class Agreement:
    lanes: list[LaneVersion]
    phases_agree: bool
    min_iou: float | None
    pairwise: list[tuple[str, str, float | None]]
    all_submitted: bool

    def consensus(self, threshold: float) -> bool:
        return (self.all_submitted and self.phases_agree and self.min_iou is not None
                and self.min_iou >= threshold)


@dataclass(frozen=True)
class ApprovalView:
    """A submitted version against the model's proposal (if it started from one)."""

    annotation_id: int
    case_id: int
    case_key: str
    width: int
    height: int
    version: int
    author: str
    status: str
    draft: GoZoneDraft
    proposal_model: str | None
    proposal: GoZoneDraft | None
    iou_to_proposal: float | None
    phase_changed: bool | None
    text_diff: dict[str, list[tuple[str, str]]]
    agreement: Agreement | None


@dataclass(frozen=True)
class PendingRow:
    annotation_id: int
    case_key: str
    version: int
    author: str
    lanes: int


def text_diff(before: str | None, after: str | None) -> list[tuple[str, str]]:
    """Word-level diff as (op, text) with op in {"=", "-", "+"}: what the annotator changed in a text."""
    a, b = (before or "").split(), (after or "").split()
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(("+", " ".join(b[j1:j2])))
    return out


def pending(session: Session, actor: Actor) -> list[PendingRow]:
    """Submitted lane heads awaiting review, oldest first, leaving out the approver's own work."""
    require(actor, *APPROVER_ROLES)
    newer = aliased(Annotation)
    superseded = select(newer.id).where(newer.case_id == Annotation.case_id, newer.lane == Annotation.lane,
                                        newer.version > Annotation.version).exists()
    rows = session.execute(
        select(Annotation.id, Case.key, Annotation.version, User.username, Annotation.case_id)
        .join(User, User.id == Annotation.author_id).join(Case, Case.id == Annotation.case_id)
        .where(Annotation.status == "submitted", Annotation.author_id != actor.user_id, ~superseded)
        .order_by(Annotation.created_at, Annotation.id)).all()
    return [PendingRow(annotation_id, key, version, author, len(_lanes(session, case_id)))
            for annotation_id, key, version, author, case_id in rows]


def _lanes(session: Session, case_id: int) -> list[int]:
    """The lanes of a case: the assigned independent lanes, or the shared lane."""
    lanes = sorted(set(session.scalars(select(AnnotationAssignment.lane).where(
        AnnotationAssignment.case_id == case_id, AnnotationAssignment.lane != 0))))
    return lanes or [0]


def agreement(session: Session, case_id: int) -> Agreement | None:
    """Phase agreement and pairwise IoU of the lanes' newest versions; None for a single-lane case."""
    lanes = _lanes(session, case_id)
    if len(lanes) < 2:
        return None
    names = dict(session.execute(select(User.id, User.username)).all())
    heads = [(lane, head(session, case_id, lane=lane)) for lane in lanes]
    views = [LaneVersion(a.id, lane, names.get(a.author_id, "?"), a.status, GoZoneDraft.of(a))
             for lane, a in heads if a is not None]
    pairwise = [(x.author, y.author, box_iou(x.draft.box, y.draft.box)) for x, y in combinations(views, 2)]
    ious = [v for _, _, v in pairwise]
    return Agreement(
        lanes=views, phases_agree=len({v.draft.phase for v in views}) == 1 and len(views) == len(lanes),
        min_iou=None if not ious or any(v is None for v in ious) else min(ious), pairwise=pairwise,
        all_submitted=len(views) == len(lanes) and all(v.status in ("submitted", "approved") for v in views))


def _proposal(session: Session, annotation: Annotation) -> tuple[str | None, GoZoneDraft | None]:
    if annotation.source_prediction_id is None:
        return None, None
    prediction = session.get(Prediction, annotation.source_prediction_id)
    if prediction is None:
        return None, None
    proposal = proposal_of(prediction, prediction.run.model.name)
    return proposal.source.removeprefix(MODEL_PREFIX), proposal.draft


def view(session: Session, actor: Actor, annotation_id: int) -> ApprovalView:
    """The approval screen's content for one version."""
    require(actor, *APPROVER_ROLES)
    annotation = _get(session, annotation_id)
    case = get_case(session, annotation.case_id)
    draft = GoZoneDraft.of(annotation)
    model, proposal = _proposal(session, annotation)
    author = session.scalar(select(User.username).where(User.id == annotation.author_id)) or "?"
    return ApprovalView(
        annotation_id=annotation.id, case_id=case.id, case_key=case.key, width=case.frame.width,
        height=case.frame.height, version=annotation.version, author=author, status=annotation.status,
        draft=draft, proposal_model=model, proposal=proposal,
        iou_to_proposal=box_iou(draft.box, proposal.box) if proposal else None,
        phase_changed=(draft.phase != proposal.phase) if proposal else None,
        text_diff={name: text_diff(getattr(proposal, name) if proposal else None, getattr(draft, name))
                   for name in TEXT_FIELDS},
        agreement=agreement(session, case.id))


def _get(session: Session, annotation_id: int) -> Annotation:
    annotation = session.get(Annotation, annotation_id)
    if annotation is None:
        raise NotFound(f"There is no annotation version {annotation_id}.")
    return annotation


def _reviewable(session: Session, actor: Actor, annotation_id: int, comment: str | None) -> tuple[Annotation, str | None]:
    require(actor, *APPROVER_ROLES)
    annotation = _get(session, annotation_id)
    if annotation.author_id == actor.user_id:
        raise PermissionDenied("You cannot review your own annotation; another approver must.")
    if annotation.status != "submitted":
        raise Conflict(f"Version {annotation.version} is {annotation.status}, not awaiting review.")
    newest = head(session, annotation.case_id, lane=annotation.lane)
    if newest is not None and newest.id != annotation.id:
        raise Conflict(f"Version {newest.version} of this case was saved after version {annotation.version}; "
                       "review the newest one.")
    comment = storable(comment.strip()) if comment else None
    if comment and len(comment) > MAX_COMMENT_CHARS:
        raise DomainError(f"The comment is {len(comment):,} characters long; the limit is {MAX_COMMENT_CHARS:,}.")
    return annotation, comment or None


def _mark(annotation: Annotation, actor: Actor, status: str, comment: str | None) -> None:
    annotation.status = status
    annotation.reviewer_id = actor.user_id
    annotation.review_comment = comment
    annotation.reviewed_at = utcnow()


def reject(session: Session, actor: Actor, annotation_id: int, comment: str) -> Annotation:
    """Send a submitted version back to its annotator; a comment saying what to fix is required."""
    annotation, comment = _reviewable(session, actor, annotation_id, comment)
    if not comment:
        raise DomainError("Say what needs fixing: a rejection needs a comment for the annotator.")
    _mark(annotation, actor, "rejected", comment)
    audit.record(session, "annotation.reject", actor_id=actor.user_id, entity_type="annotation",
                 entity_id=annotation.id, payload={"case_id": annotation.case_id, "version": annotation.version})
    return annotation


def approve(session: Session, actor: Actor, annotation_id: int, comment: str | None = None, *,
            consensus_iou: float = 0.5) -> Label:
    """Approve a submitted version and make it the case's current reference label (returned).

    On a case with several independent lanes the consensus rule applies (see the module docstring)."""
    annotation, comment = _reviewable(session, actor, annotation_id, comment)
    if annotation.phase is None or annotation.box is None:
        raise DomainError("Only a version with a phase and a box can become the reference.")
    agreed = agreement(session, annotation.case_id)
    approved = [annotation]
    if agreed is not None:
        if not agreed.consensus(consensus_iou):
            raise Conflict(_no_consensus_message(agreed, consensus_iou))
        approved = [_get(session, lane.annotation_id) for lane in agreed.lanes if lane.status == "submitted"]
    for version in approved:
        _mark(version, actor, "approved", comment)
    label = _make_reference(session, annotation)
    audit.record(session, "annotation.approve", actor_id=actor.user_id, entity_type="annotation",
                 entity_id=annotation.id, payload={"case_id": annotation.case_id, "version": annotation.version,
                                                   "label_id": label.id, "lanes": len(approved)})
    return label


def _no_consensus_message(agreed: Agreement, threshold: float) -> str:
    problems = []
    if not agreed.all_submitted:
        problems.append("not every annotator has submitted")
    if not agreed.phases_agree:
        phases = ", ".join(f"{v.author}: {v.draft.phase or '-'}" for v in agreed.lanes)
        problems.append(f"the phases differ ({phases})")
    if agreed.min_iou is None or agreed.min_iou < threshold:
        shown = "no box" if agreed.min_iou is None else f"{agreed.min_iou:.2f}"
        problems.append(f"the lowest pairwise IoU is {shown}, under {threshold:.2f}")
    return "No consensus yet: " + "; ".join(problems) + ". Reject the outliers so they are redone."


def _make_reference(session: Session, annotation: Annotation) -> Label:
    content = {"phase": annotation.phase, "box": list(annotation.box or ()),
               **{name: getattr(annotation, name) for name in TEXT_FIELDS}}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    session.execute(update(Label).where(Label.case_id == annotation.case_id, Label.is_current)
                    .values(is_current=False))
    label = Label(case_id=annotation.case_id, source=f"{SOURCE_PREFIX}{annotation.id}", is_current=True,
                  phase=annotation.phase, phase_raw=annotation.phase, box=annotation.box,
                  content_sha256=digest, **{name: getattr(annotation, name) for name in TEXT_FIELDS})
    session.add(label)
    session.flush()
    return label
