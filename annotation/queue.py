"""Who annotates which case, and each annotator's queue with the state of their work on every case."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import audit
from db.cases import CaseFilter
from db.errors import DomainError
from db.schema import Annotation, AnnotationAssignment, Case, User, UserRole
from db.users import Actor, require

STATES = ("todo", "draft", "submitted", "rejected", "approved")


@dataclass(frozen=True)
class QueueRow:
    case_id: int
    case_key: str
    state: str
    version: int | None
    updated_at: datetime | None
    comment: str | None


def assign_annotators(session: Session, actor: Actor, case_ids: Sequence[int], annotator_ids: Sequence[int], *,
                      per_case: int = 1, seed: int = 0) -> int:
    """Give each case to ``per_case`` annotators, always the least loaded (seeded ties), skipping pairs that
    exist. With ``per_case`` > 1 every annotator works in a lane of their own (an agreement study).
    Returns the number of new assignments."""
    require(actor, "admin")
    annotators = list(dict.fromkeys(annotator_ids))
    if not 1 <= per_case <= len(annotators):
        raise DomainError(f"Each case needs between 1 and {len(annotators)} annotators (the number chosen), "
                          f"not {per_case}.")
    able = set(session.scalars(select(User.id).join(UserRole).where(
        User.id.in_(annotators), User.is_active, UserRole.role == "annotator")))
    if missing := [a for a in annotators if a not in able]:
        raise DomainError(f"User id(s) {missing} are not active annotators.")
    existing = session.execute(select(AnnotationAssignment.case_id, AnnotationAssignment.annotator_id)).all()
    taken = {(c, a) for c, a in existing}
    load = Counter(a for _, a in existing)
    rng = np.random.default_rng(seed)
    added = 0
    for case_id in dict.fromkeys(case_ids):
        have = [a for a in annotators if (case_id, a) in taken]
        free = [a for a in annotators if (case_id, a) not in taken]
        need = per_case - len(have)
        if need <= 0:
            continue
        ties = rng.random(len(free))
        chosen = [free[i] for i in sorted(range(len(free)), key=lambda i: (load[free[i]], ties[i]))[:need]]
        for annotator in chosen:
            session.add(AnnotationAssignment(case_id=case_id, annotator_id=annotator,
                                             lane=annotator if per_case > 1 else 0))
            load[annotator] += 1
            added += 1
    session.flush()
    audit.record(session, "annotation.assign", actor_id=actor.user_id, entity_type="cases",
                 payload={"cases": len(case_ids), "annotators": annotators, "per_case": per_case, "added": added})
    return added


def queue(session: Session, actor: Actor, *, state: str | None = None,
          case_filter: CaseFilter | None = None) -> list[QueueRow]:
    """The cases assigned to ``actor`` with the state of their lane's newest version, in case order.
    ``state`` keeps one of STATES."""
    require(actor, "annotator", "admin")
    if state is not None and state not in STATES:
        raise DomainError(f"Unknown state {state!r}; choose one of {', '.join(STATES)}.")
    ids = select(AnnotationAssignment.case_id, AnnotationAssignment.lane).where(
        AnnotationAssignment.annotator_id == actor.user_id)
    if case_filter is not None:
        ids = ids.where(AnnotationAssignment.case_id.in_(case_filter.query().order_by(None)))
    assigned = session.execute(ids).all()
    lanes = dict(assigned)
    if not lanes:
        return []
    newest = (select(Annotation.case_id, Annotation.lane, func.max(Annotation.version).label("version"))
              .where(Annotation.case_id.in_(lanes)).group_by(Annotation.case_id, Annotation.lane).subquery())
    heads = {(a.case_id, a.lane): a for a in session.scalars(
        select(Annotation).join(newest, (Annotation.case_id == newest.c.case_id)
                                & (Annotation.lane == newest.c.lane) & (Annotation.version == newest.c.version)))}
    cases = session.execute(select(Case.id, Case.key).where(Case.id.in_(lanes))
                            .order_by(Case.dataset, Case.video, Case.frame_index, Case.key)).all()
    rows = []
    for case_id, key in cases:
        current = heads.get((case_id, lanes[case_id]))
        row = QueueRow(case_id, key, current.status if current else "todo", current.version if current else None,
                       current.created_at if current else None, current.review_comment if current else None)
        if state is None or row.state == state:
            rows.append(row)
    return rows
