"""Go Zone correction: append-only versions per (case, lane) with optimistic concurrency.

Every save is a new version whose parent is the version the editor was opened on (``base_id``). When that
is no longer the lane's newest version somebody else saved in between: the save is refused with an
``EditConflict`` that carries the other version, and the caller keeps what the user typed. The unique
(case, lane, version) key makes two saves racing on the same parent collide in the database as well.

Lanes: 0 is a case's shared line of versions; in an agreement study each annotator works in a lane of
their own (their user id), so that nobody starts from a colleague's box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import audit
from db.errors import Conflict, DomainError, NotFound, PermissionDenied
from db.schema import Annotation, AnnotationAssignment, Case, Prediction, User
from db.text import storable
from db.users import Actor, require
from models import vocabularies
from models.boxes import Box, iou

EDITOR_ROLES = ("annotator", "admin")
TEXT_FIELDS = ("location", "exposure", "next_action", "critical_risk")
TEXT_LABELS = {"location": "Location", "exposure": "Exposure", "next_action": "Next action",
               "critical_risk": "Critical risk"}
MAX_TEXT_CHARS = 5_000
# A box may stick out of the frame by this many pixels (a drag that ends on the image border) and is
# then pulled in; anything further out is refused rather than silently cut.
EDGE_TOLERANCE_PX = 2.0
MIN_SIDE_PX = 1.0

BoxTuple = tuple[float, float, float, float]


class InvalidAnnotation(DomainError):
    """The annotation cannot be stored as it is (no phase, a bad box, over-long text)."""


@dataclass(frozen=True)
class OtherVersion:
    """The newer version a stale save ran into, detached from the session so it outlives a rollback."""

    id: int
    version: int
    author: str | None
    created_at: datetime | None
    draft: GoZoneDraft


class EditConflict(Conflict):
    """Somebody saved a newer version of this lane since the editor was opened; ``current`` is theirs."""

    def __init__(self, current: Annotation | None, author: str | None) -> None:
        self.current = None if current is None else OtherVersion(
            current.id, current.version, author, current.created_at, GoZoneDraft.of(current))
        if current is None:
            message = ("The version you started from is no longer the newest of this case. "
                       "Your text is kept; reload the case and save again.")
        else:
            when = current.created_at.strftime("%H:%M:%S") if current.created_at else "just now"
            message = (f"{author or 'Someone'} saved version {current.version} of this case at {when} while you "
                       "were editing. Nothing you typed is lost: compare it with their version, shown beside "
                       "your editor, then save again to put yours on top.")
        super().__init__(message)


@dataclass(frozen=True)
class GoZoneDraft:
    """What the editor holds: a phase id, a canonical pixel box of the original frame, the four texts."""

    phase: str | None
    box: BoxTuple | None
    location: str | None = None
    exposure: str | None = None
    next_action: str | None = None
    critical_risk: str | None = None

    def texts(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in TEXT_FIELDS}

    @classmethod
    def of(cls, annotation: Annotation) -> GoZoneDraft:
        return cls(phase=annotation.phase, box=annotation.box,
                   **{name: getattr(annotation, name) for name in TEXT_FIELDS})


def gozone_vocabulary(case: Case) -> vocabularies.Vocabulary:
    """ResGo A-D for cholecystectomy; the procedure's (or dataset's) phase vocabulary otherwise."""
    if case.procedure == "laparoscopic_cholecystectomy":
        return vocabularies.load("resgo")
    return vocabularies.vocabulary_for("phase", case.dataset, case.procedure)


def checked_draft(draft: GoZoneDraft, case: Case, *, submit: bool) -> GoZoneDraft:
    """``draft`` made storable for ``case``: phase normalised to the vocabulary's id, box checked against the
    frame, texts cleaned and bounded. Raises InvalidAnnotation saying what to fix. A submitted version
    needs a phase and a box; a draft may lack either."""
    vocabulary = gozone_vocabulary(case)
    phase = None
    if draft.phase not in (None, ""):
        phase = vocabulary.normalize_phase(str(draft.phase))
        if phase is None:
            known = ", ".join(f"{p.id} ({p.name})" for p in vocabulary.phases)
            raise InvalidAnnotation(f"Phase {str(draft.phase)[:80]!r} is not in the {vocabulary.title} "
                                    f"vocabulary; choose one of {known}.")
    box = None if draft.box is None else checked_box(draft.box, case.frame.width, case.frame.height)
    if submit and (phase is None or box is None):
        missing = " and ".join(w for w, v in (("a phase", phase), ("a Go Zone box", box)) if v is None)
        raise InvalidAnnotation(f"To submit, the annotation needs {missing}. Save it as a draft meanwhile.")
    texts = {}
    for name in TEXT_FIELDS:
        value = getattr(draft, name)
        value = storable(str(value).strip()) if value is not None else None
        if value and len(value) > MAX_TEXT_CHARS:
            raise InvalidAnnotation(f"{TEXT_LABELS[name]} is {len(value):,} characters long; the limit is "
                                    f"{MAX_TEXT_CHARS:,}.")
        texts[name] = value or None
    return GoZoneDraft(phase=phase, box=box, **texts)


def checked_box(values: object, width: int, height: int) -> BoxTuple:
    """Four finite corners inside a ``width`` x ``height`` frame (up to EDGE_TOLERANCE_PX over an edge,
    pulled in), in any corner order, at least MIN_SIDE_PX on each side."""
    try:
        x1, y1, x2, y2 = (float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise InvalidAnnotation("A box is four numbers: x1, y1, x2, y2 in pixels of the frame.") from exc
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InvalidAnnotation("The box has a corner that is not a finite number (NaN or infinity).")
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise InvalidAnnotation(f"The box ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f}) lies outside the "
                                f"{width} x {height} frame; draw it on the image.")
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if x2 - x1 < MIN_SIDE_PX or y2 - y1 < MIN_SIDE_PX:
        raise InvalidAnnotation("The box has no area; drag it out to cover the Go Zone.")
    return (x1, y1, x2, y2)


def get_case(session: Session, case_id: int) -> Case:
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"There is no case {case_id}.")
    return case


def head(session: Session, case_id: int, *, lane: int = 0) -> Annotation | None:
    """The newest version of ``case_id``'s ``lane``, or None before the first save."""
    return session.scalars(select(Annotation).where(Annotation.case_id == case_id, Annotation.lane == lane)
                           .order_by(Annotation.version.desc()).limit(1)).first()


def lane_of(session: Session, case_id: int, user_id: int) -> int:
    """The lane ``user_id`` works in on ``case_id``: their own in an agreement study, else the shared one."""
    lane = session.scalar(select(AnnotationAssignment.lane).where(
        AnnotationAssignment.case_id == case_id, AnnotationAssignment.annotator_id == user_id))
    return lane or 0


def check_may_edit(session: Session, actor: Actor, case_id: int, lane: int) -> None:
    """Annotators edit the cases given to them (any case when none is assigned to anybody); admins any lane."""
    require(actor, *EDITOR_ROLES)
    if actor.has("admin"):
        return
    assigned = set(session.scalars(select(AnnotationAssignment.annotator_id)
                                   .where(AnnotationAssignment.case_id == case_id)))
    if assigned and actor.user_id not in assigned:
        raise PermissionDenied("This case is assigned to other annotators.")
    if lane not in (0, actor.user_id):
        raise PermissionDenied("This is another annotator's independent annotation of the case.")


def save_version(session: Session, actor: Actor, case_id: int, draft: GoZoneDraft, *, base_id: int | None,
                 submit: bool = False, lane: int | None = None, source: str | None = None,
                 source_prediction_id: int | None = None) -> Annotation:
    """Store ``draft`` as the next version of the case's lane on top of ``base_id`` (None for the first).

    ``submit`` sends it for approval, otherwise it is a draft. Raises EditConflict when ``base_id`` is not the
    lane's newest version, InvalidAnnotation for bad content, PermissionDenied / NotFound as usual.
    ``source`` says where the content came from; the model proposal (``source_prediction_id``) is carried
    over from the parent so an approver can always compare with it.
    """
    case = get_case(session, case_id)
    lane = lane_of(session, case_id, actor.user_id) if lane is None else lane
    check_may_edit(session, actor, case_id, lane)
    draft = checked_draft(draft, case, submit=submit)
    if source_prediction_id is not None and session.scalar(
            select(Prediction.case_id).where(Prediction.id == source_prediction_id)) != case_id:
        raise InvalidAnnotation("The model proposal given is not a prediction of this case.")
    current = head(session, case_id, lane=lane)
    if (current.id if current else None) != base_id:
        raise EditConflict(current, _username(session, current))
    parent = current
    version = Annotation(
        case_id=case_id, lane=lane, version=(parent.version + 1) if parent else 1,
        parent_id=parent.id if parent else None, author_id=actor.user_id, phase=draft.phase, box=draft.box,
        source=source or "edit",
        source_prediction_id=source_prediction_id or (parent.source_prediction_id if parent else None),
        status="submitted" if submit else "draft", **draft.texts())
    try:
        with session.begin_nested():
            session.add(version)
            session.flush()
    except IntegrityError as exc:  # a concurrent save took this version number first
        session.expire_all()
        newer = head(session, case_id, lane=lane)
        raise EditConflict(newer, _username(session, newer)) from exc
    audit.record(session, "annotation.submit" if submit else "annotation.save", actor_id=actor.user_id,
                 entity_type="annotation", entity_id=version.id,
                 payload={"case_id": case_id, "lane": lane, "version": version.version,
                          "changed": changed_fields(GoZoneDraft.of(parent) if parent else None, draft)})
    return version


def _username(session: Session, annotation: Annotation | None) -> str | None:
    if annotation is None:
        return None
    return session.scalar(select(User.username).where(User.id == annotation.author_id))


def changed_fields(before: GoZoneDraft | None, after: GoZoneDraft) -> list[str]:
    """Names of the fields that differ (all set fields for a first version)."""
    if before is None:
        return [f.name for f in fields(after) if getattr(after, f.name) not in (None, "")]
    return [f.name for f in fields(after) if getattr(before, f.name) != getattr(after, f.name)]


def box_iou(a: BoxTuple | None, b: BoxTuple | None) -> float | None:
    if a is None or b is None:
        return None
    return iou(Box(*a), Box(*b))


@dataclass(frozen=True)
class VersionView:
    """One version for the history list: who, when, what, and what changed against its parent."""

    id: int
    version: int
    lane: int
    author: str
    created_at: datetime
    status: str
    source: str | None
    draft: GoZoneDraft
    changed: list[str]
    iou_to_parent: float | None
    reviewer: str | None
    review_comment: str | None


def history(session: Session, actor: Actor, case_id: int, *, lane: int | None = None) -> list[VersionView]:
    """All versions of a case's lane, newest first. Approvers and admins may read any lane."""
    get_case(session, case_id)
    lane = lane_of(session, case_id, actor.user_id) if lane is None else lane
    if not actor.has("approver", "admin"):
        check_may_edit(session, actor, case_id, lane)
    rows = session.scalars(select(Annotation).where(Annotation.case_id == case_id, Annotation.lane == lane)
                           .order_by(Annotation.version)).all()
    names = dict(session.execute(select(User.id, User.username).where(
        User.id.in_({r.author_id for r in rows} | {r.reviewer_id for r in rows if r.reviewer_id}))).all())
    views, previous = [], None
    for row in rows:
        draft = GoZoneDraft.of(row)
        views.append(VersionView(
            id=row.id, version=row.version, lane=row.lane, author=names.get(row.author_id, "?"),
            created_at=row.created_at, status=row.status, source=row.source, draft=draft,
            changed=changed_fields(previous, draft),
            iou_to_parent=box_iou(previous.box, draft.box) if previous else None,
            reviewer=names.get(row.reviewer_id) if row.reviewer_id else None, review_comment=row.review_comment))
        previous = draft
    return views[::-1]


def version_count(session: Session, case_id: int) -> int:
    """How many versions a case has, over all its lanes."""
    return session.scalar(select(func.count()).select_from(Annotation).where(Annotation.case_id == case_id)) or 0
