"""A teaching collection over the synthetic demo pack: ``serve --demo`` has something to present and quiz."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.schema import Case, Collection, Label, Model
from db.users import actor_of, find_user
from models.vocabularies import load
from review.teaching.collections import add_to_collection, create_collection, set_item_notes

DEMO_COLLECTION = "Demo: Go Zones phase by phase"
DEMO_PRESENTER = "demo-surg-r1"
PER_PHASE = 2


def ensure_demo_collection(session: Session, educator: str = "educator") -> Collection | None:
    """The shared demo collection of ``educator`` (two demo cases per ResGo phase, each with the phase's Go
    Zone definition as its teaching point), created when missing. None when the educator or the demo cases
    are not there. Idempotent."""
    user = find_user(session, educator)
    if user is None or "educator" not in user.role_names:
        return None
    existing = session.scalar(select(Collection).where(Collection.owner_id == user.id,
                                                       Collection.name == DEMO_COLLECTION))
    if existing is not None:
        return existing
    current = (Label.case_id == Case.id) & Label.is_current
    rows = session.execute(select(Case.id, Label.phase).join(Label, current)
                           .where(Case.dataset == "demo").order_by(Case.video, Case.frame_index)).all()
    if not rows:
        return None
    by_phase: dict[str, list[int]] = {}
    for case_id, phase in rows:
        by_phase.setdefault(phase, []).append(case_id)
    vocabulary = load("resgo")
    known = session.scalar(select(Model.id).where(Model.name == DEMO_PRESENTER)) is not None
    presenter = DEMO_PRESENTER if known else None
    educator_actor = actor_of(user)
    collection = create_collection(session, educator_actor, DEMO_COLLECTION, shared=True, presenter=presenter,
                                   description="Synthetic demo frames, two per ResGo phase, in order.")
    for phase in vocabulary.phases:
        for case_id in by_phase.get(phase.id, [])[:PER_PHASE]:
            add_to_collection(session, educator_actor, collection.id, case_id)
            set_item_notes(session, educator_actor, collection.id, case_id,
                           notes=f"Ask for the phase first, then where it is safe to work ({phase.name}).",
                           teaching_point=f"{phase.name}: the Go Zone is {phase.definition[0].lower()}"
                                          f"{phase.definition[1:]}")
    return collection
