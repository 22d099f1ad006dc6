"""Teaching collections: an educator's named, ordered set of cases with notes and a teaching point per case.

Educators create and edit their own collections and may open (present) any shared one; residents see shared
collections only, and only through the quiz (never the notes or teaching points, which may give the answer
away). Services take a session and the acting user, check roles and ownership, audit writes, never commit.
Positions run 1..n without gaps; a unique (collection, position) key keeps them distinct.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from db.audit import record
from db.errors import Conflict, DomainError, NotFound, PermissionDenied
from db.schema import (
    TASKS,
    Case,
    Collection,
    CollectionItem,
    Label,
    Model,
    Prediction,
    QuizAttempt,
    Run,
    User,
)
from db.text import storable
from db.users import Actor, require

EDUCATOR = "educator"
RESIDENT = "resident"
NAME_MAX = 200
NOTE_MAX = 20_000
DEFAULT_TASK = "gozone"


class TeachingError(DomainError):
    """A teaching action was refused for a reason the user can fix (a name, a duplicate case)."""


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as listed: who owns it, whether residents see it, how many cases it holds."""

    id: int
    name: str
    owner: str
    shared: bool
    description: str | None
    task: str
    presenter: str | None
    items: int
    mine: bool


@dataclass(frozen=True)
class ItemInfo:
    """One case of a collection as its educator sees it (notes and teaching point included)."""

    case_id: int
    case_key: str
    position: int
    notes: str | None
    teaching_point: str | None
    reference_phase: str | None


def _audit(session: Session, actor: Actor, action: str, collection_id: int, **payload: object) -> None:
    record(session, f"teaching.{action}", actor_id=actor.user_id, actor_label=actor.username,
           entity_type="collection", entity_id=collection_id, payload=payload)


def _clean_name(name: str | None) -> str:
    cleaned = " ".join(storable(name or "").split())
    if not cleaned:
        raise TeachingError("Give the collection a name.")
    if len(cleaned) > NAME_MAX:
        raise TeachingError(f"A collection name has at most {NAME_MAX} characters.")
    return cleaned


def _clean_note(text: str | None) -> str | None:
    cleaned = storable((text or "").strip())
    if cleaned and len(cleaned) > NOTE_MAX:
        raise TeachingError(f"A note has at most {NOTE_MAX:,} characters.")
    return cleaned or None


def _model_id(session: Session, name: str | None) -> int | None:
    if not name:
        return None
    model_id = session.scalar(select(Model.id).where(Model.name == name))
    if model_id is None:
        raise NotFound(f"There is no model {name!r}.")
    return model_id


def get_collection(session: Session, actor: Actor, collection_id: int, *, edit: bool = False) -> Collection:
    """The collection if ``actor`` may see it (edit=True: if they own it). An educator sees their own and
    shared ones, a resident shared ones only; NotFound for anything else (its existence is not revealed)."""
    require(actor, EDUCATOR, RESIDENT)
    collection = session.get(Collection, int(collection_id)) if collection_id is not None else None
    mine = collection is not None and collection.owner_id == actor.user_id
    visible = collection is not None and (collection.shared or (mine and actor.has(EDUCATOR)))
    if not visible:
        raise NotFound("There is no such collection, or it is not shared with you.")
    if edit:
        require(actor, EDUCATOR)
        if not mine:
            raise PermissionDenied("Only the educator who made this collection can change it.")
    return collection


def visible_collections(session: Session, actor: Actor) -> list[CollectionInfo]:
    """The collections ``actor`` may open, by name: an educator's own first, then the shared ones."""
    require(actor, EDUCATOR, RESIDENT)
    query = (select(Collection, User.username, Model.name).join(User, User.id == Collection.owner_id)
             .outerjoin(Model, Model.id == Collection.presenter_model_id))
    if actor.has(EDUCATOR):
        query = query.where((Collection.owner_id == actor.user_id) | Collection.shared)
    else:
        query = query.where(Collection.shared)
    rows = session.execute(query).all()
    ids = [c.id for c, _, _ in rows]
    counts = dict(session.execute(select(CollectionItem.collection_id, func.count())
                                  .where(CollectionItem.collection_id.in_(ids))
                                  .group_by(CollectionItem.collection_id)).all())
    infos = [CollectionInfo(c.id, c.name, owner, c.shared, c.description, c.task, presenter,
                            counts.get(c.id, 0), c.owner_id == actor.user_id) for c, owner, presenter in rows]
    return sorted(infos, key=lambda info: (not info.mine, info.name.casefold(), info.id))


def create_collection(session: Session, actor: Actor, name: str, *, description: str | None = None,
                      shared: bool = False, task: str = DEFAULT_TASK, presenter: str | None = None
                      ) -> Collection:
    """A new empty collection owned by the educator ``actor``; Conflict when they have one so named."""
    require(actor, EDUCATOR)
    cleaned = _clean_name(name)
    if task not in TASKS:
        raise TeachingError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if session.scalar(select(Collection.id).where(Collection.owner_id == actor.user_id,
                                                  Collection.name == cleaned)) is not None:
        raise Conflict(f"You already have a collection called {cleaned!r}.")
    collection = Collection(name=cleaned, owner_id=actor.user_id, shared=bool(shared), task=task,
                            description=_clean_note(description),
                            presenter_model_id=_model_id(session, presenter))
    session.add(collection)
    session.flush()
    _audit(session, actor, "create", collection.id, name=cleaned, shared=bool(shared), task=task)
    return collection


def update_collection(session: Session, actor: Actor, collection_id: int, *, name: str | None = None,
                      description: str | None = None, shared: bool | None = None,
                      presenter: str | None = None) -> Collection:
    """Change the owner's collection: a None argument keeps its value (an empty presenter clears it)."""
    collection = get_collection(session, actor, collection_id, edit=True)
    changes: dict[str, object] = {}
    if name is not None and _clean_name(name) != collection.name:
        cleaned = _clean_name(name)
        if session.scalar(select(Collection.id).where(Collection.owner_id == actor.user_id,
                                                      Collection.name == cleaned)) is not None:
            raise Conflict(f"You already have a collection called {cleaned!r}.")
        collection.name = changes["name"] = cleaned
    if description is not None:
        collection.description = _clean_note(description)
    if shared is not None and bool(shared) != collection.shared:
        collection.shared = changes["shared"] = bool(shared)
    if presenter is not None:
        collection.presenter_model_id = _model_id(session, presenter)
        changes["presenter"] = presenter or None
    session.flush()
    _audit(session, actor, "update", collection.id, **changes)
    return collection


def delete_collection(session: Session, actor: Actor, collection_id: int) -> None:
    """Delete the owner's collection and its items; quiz attempts made in it are kept (without it)."""
    collection = get_collection(session, actor, collection_id, edit=True)
    session.execute(update(QuizAttempt).where(QuizAttempt.collection_id == collection.id)
                    .values(collection_id=None))
    session.execute(delete(CollectionItem).where(CollectionItem.collection_id == collection.id))
    _audit(session, actor, "delete", collection.id, name=collection.name)
    session.delete(collection)
    session.flush()


# --- items ------------------------------------------------------------------------------------------------

def item_case_ids(session: Session, collection_id: int) -> list[int]:
    """The case ids of a collection in position order (no permission check: callers have done it)."""
    return list(session.scalars(select(CollectionItem.case_id)
                                .where(CollectionItem.collection_id == collection_id)
                                .order_by(CollectionItem.position)))


def collection_items(session: Session, actor: Actor, collection_id: int) -> list[ItemInfo]:
    """The cases of a collection with their notes and teaching points, in order (educators only)."""
    require(actor, EDUCATOR)
    collection = get_collection(session, actor, collection_id)
    rows = session.execute(
        select(CollectionItem, Case.key, Label.phase).join(Case, Case.id == CollectionItem.case_id)
        .outerjoin(Label, (Label.case_id == Case.id) & Label.is_current)
        .where(CollectionItem.collection_id == collection.id).order_by(CollectionItem.position)).all()
    return [ItemInfo(item.case_id, key, item.position, item.notes, item.teaching_point, phase)
            for item, key, phase in rows]


def find_case(session: Session, key: str) -> Case:
    """The case whose key is ``key`` (surrounding spaces ignored); NotFound otherwise."""
    case = session.scalar(select(Case).where(Case.key == (key or "").strip()))
    if case is None:
        raise NotFound(f"There is no case {key!r}.")
    return case


def add_to_collection(session: Session, actor: Actor, collection_id: int, case_id: int, *,
                      notes: str | None = None, teaching_point: str | None = None) -> CollectionItem:
    """Append case ``case_id`` to the owner's collection; Conflict when it is already in it."""
    collection = get_collection(session, actor, collection_id, edit=True)
    case = session.get(Case, int(case_id))
    if case is None:
        raise NotFound(f"There is no case {case_id}.")
    if session.get(CollectionItem, (collection.id, case.id)) is not None:
        raise Conflict(f"Case {case.key} is already in {collection.name!r}.")
    last = session.scalar(select(func.max(CollectionItem.position))
                          .where(CollectionItem.collection_id == collection.id)) or 0
    item = CollectionItem(collection_id=collection.id, case_id=case.id, position=last + 1,
                          notes=_clean_note(notes), teaching_point=_clean_note(teaching_point))
    session.add(item)
    session.flush()
    _audit(session, actor, "add", collection.id, case=case.key, position=item.position)
    return item


def add_cases(session: Session, actor: Actor, collection_id: int, case_ids: Iterable[int]) -> int:
    """Append every case of ``case_ids`` not yet in the collection, in the given order; returns how many."""
    collection = get_collection(session, actor, collection_id, edit=True)
    present = set(item_case_ids(session, collection.id))
    added = 0
    for case_id in dict.fromkeys(int(c) for c in case_ids):
        if case_id not in present:
            add_to_collection(session, actor, collection.id, case_id)
            present.add(case_id)
            added += 1
    return added


def _item(session: Session, collection: Collection, case_id: int) -> CollectionItem:
    item = session.get(CollectionItem, (collection.id, int(case_id)))
    if item is None:
        raise NotFound(f"That case is not in {collection.name!r}.")
    return item


def _renumber(session: Session, collection_id: int, case_ids: Sequence[int]) -> None:
    """Give ``case_ids`` positions 1..n in that order. Positions are first moved out of the way (negative),
    so the unique (collection, position) key never sees two items on one position mid-update."""
    items = {i.case_id: i for i in session.scalars(select(CollectionItem)
                                                   .where(CollectionItem.collection_id == collection_id))}
    for offset, item in enumerate(items.values(), start=1):
        item.position = -offset
    session.flush()
    for position, case_id in enumerate(case_ids, start=1):
        items[case_id].position = position
    session.flush()


def remove_from_collection(session: Session, actor: Actor, collection_id: int, case_id: int) -> None:
    """Take a case out of the owner's collection; the cases after it move up one place."""
    collection = get_collection(session, actor, collection_id, edit=True)
    session.delete(_item(session, collection, case_id))
    session.flush()
    _renumber(session, collection.id, item_case_ids(session, collection.id))
    _audit(session, actor, "remove", collection.id, case_id=int(case_id))


def reorder(session: Session, actor: Actor, collection_id: int, case_ids: Sequence[int]) -> None:
    """Put the owner's collection in the order ``case_ids`` (which must be exactly its cases)."""
    collection = get_collection(session, actor, collection_id, edit=True)
    wanted = [int(c) for c in case_ids]
    if sorted(wanted) != sorted(item_case_ids(session, collection.id)) or len(set(wanted)) != len(wanted):
        raise TeachingError("The new order must list every case of the collection exactly once.")
    _renumber(session, collection.id, wanted)
    _audit(session, actor, "reorder", collection.id, cases=wanted)


def move_item(session: Session, actor: Actor, collection_id: int, case_id: int, offset: int) -> int:
    """Move a case ``offset`` places (negative: earlier), stopping at either end; returns its new position."""
    collection = get_collection(session, actor, collection_id, edit=True)
    order = item_case_ids(session, collection.id)
    _item(session, collection, case_id)
    old = order.index(int(case_id))
    new = min(max(old + int(offset), 0), len(order) - 1)
    order.insert(new, order.pop(old))
    reorder(session, actor, collection.id, order)
    return new + 1


def set_item_notes(session: Session, actor: Actor, collection_id: int, case_id: int, *, notes: str | None,
                   teaching_point: str | None) -> CollectionItem:
    """Replace the teaching notes and teaching point of one case of the owner's collection."""
    collection = get_collection(session, actor, collection_id, edit=True)
    item = _item(session, collection, case_id)
    item.notes, item.teaching_point = _clean_note(notes), _clean_note(teaching_point)
    session.flush()
    _audit(session, actor, "notes", collection.id, case_id=item.case_id)
    return item


def presenter_choices(session: Session, task: str = DEFAULT_TASK) -> list[str]:
    """Names of the models with stored predictions for ``task``, by name: who can present a collection."""
    return list(session.scalars(select(Model.name).join(Run, Run.model_id == Model.id)
                                .join(Prediction, Prediction.run_id == Run.id)
                                .where(Run.task == task).distinct().order_by(Model.name)))
