"""Pull from Label Studio: every annotation not pulled before becomes a new version of its case's shared
lane, on top of the current head, through annotation.workflow.save_version (never by writing rows here).
The version's ``source`` ("labelstudio:<project>/<task>/<annotation>") makes a second pull skip it."""

from __future__ import annotations

from typing import Any

from label_studio_sdk import LabelStudio
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from annotation import workflow
from annotation.importers.common import ImportSummary
from annotation.labelstudio import payloads
from annotation.labelstudio.client import (
    LabelStudioError,
    SyncResult,
    calling,
    field_of,
    find_project,
    project_tasks,
)
from annotation.labelstudio.push import model_predictions
from db import audit
from db.errors import DomainError, NotFound
from db.schema import Annotation, Case
from db.users import Actor, actor_of, find_user


def pull(
    session: Session,
    client: LabelStudio,
    *,
    project: str | int,
    as_user: str | None = None,
    actor_label: str = "system",
) -> SyncResult:
    """Store every annotation of ``project`` not pulled before as a new version of its case's shared lane,
    on top of the current head. Versions belong to the SurgReview user whose username matches the Label
    Studio annotator (username, email, or the email's part before "@"), else to ``as_user``."""
    project_id = find_project(client, project)
    if project_id is None:
        raise NotFound(f"Label Studio has no project {project!r}.")
    fallback = _as_user(session, as_user) if as_user else None
    people = _label_studio_people(client)
    summary = ImportSummary("Label Studio pull")
    for task in project_tasks(client, project_id, only_annotated=True):
        for item in sorted(task.annotations or [], key=lambda a: field_of(a, "id")):
            source = f"labelstudio:{project_id}/{task.id}/{field_of(item, 'id')}"
            try:
                with session.begin_nested():
                    _pull_one(session, task, item, source, people, fallback, summary)
            except (DomainError, payloads.UnusableAnnotation) as exc:
                summary.rejected.append((source, str(exc)))
            except SQLAlchemyError as exc:
                summary.rejected.append((source, f"database refused the version: {exc.__class__.__name__}"))
    audit.record(
        session,
        "labelstudio.pull",
        actor_label=actor_label,
        entity_type="labelstudio_project",
        entity_id=project_id,
        payload=summary.counts,
    )
    return SyncResult(project_id, summary)


def _pull_one(
    session: Session,
    task: Any,
    item: Any,
    source: str,
    people: dict[int, tuple[str, ...]],
    fallback: Actor | None,
    summary: ImportSummary,
) -> None:
    """Store one annotation (raises for what makes it unusable; records duplicates and warnings)."""
    case = _case_of(session, task)
    if _already_pulled(session, case.id, source):
        summary.duplicates.append(source)
        return
    if field_of(item, "was_cancelled"):
        summary.warnings.append((source, "the annotator skipped this task; nothing stored"))
        return
    author = _author(session, people.get(field_of(item, "completed_by"), ()), fallback)
    read = payloads.read_result(
        field_of(item, "result") or [], case.frame.width, case.frame.height, workflow.gozone_vocabulary(case)
    )
    base = workflow.head(session, case.id, lane=0)
    workflow.save_version(
        session,
        author,
        case.id,
        read.draft,
        base_id=base.id if base else None,
        submit=read.draft.phase is not None,
        lane=0,
        source=source,
        source_prediction_id=_proposal_id(session, case.id, task, item),
    )
    summary.imported.append(source)
    summary.warnings += [(source, warning) for warning in read.warnings]


def _proposal_id(session: Session, case_id: int, task: Any, item: Any) -> int | None:
    """Our prediction behind the model proposal the annotator saw: the Label Studio prediction the
    annotation started from, else the task's first one, found by its model_version (our model's name)."""
    predictions = list(task.predictions or [])
    started_from = field_of(item, "parent_prediction")
    chosen = next((p for p in predictions if field_of(p, "id") == started_from), None)
    chosen = chosen or (predictions[0] if predictions else None)
    model = field_of(chosen, "model_version") if chosen is not None else None
    if not model:
        return None
    try:
        prediction = model_predictions(session, model, [case_id]).get(case_id)
    except NotFound:  # a model Label Studio knows but this database does not
        return None
    return prediction.id if prediction else None


def _already_pulled(session: Session, case_id: int, source: str) -> bool:
    """True when any version of the case (any lane) came from this Label Studio annotation."""
    query = select(Annotation.id).where(Annotation.case_id == case_id, Annotation.source == source).limit(1)
    return session.scalar(query) is not None


def _case_of(session: Session, task: Any) -> Case:
    key = (task.data or {}).get(payloads.CASE_KEY)
    if not key:
        raise payloads.UnusableAnnotation(
            f"task {task.id} has no {payloads.CASE_KEY}; it was not pushed by SurgReview"
        )
    case = session.scalar(select(Case).where(Case.key == key))
    if case is None:
        raise NotFound(f"task {task.id} names case {key!r}, which this database does not hold")
    return case


def _label_studio_people(client: LabelStudio) -> dict[int, tuple[str, ...]]:
    """Label Studio user id -> the names to match against ours: username, email, the email's local part."""
    with calling("the user list"):
        users = list(client.users.list())
    people = {}
    for user in users:
        email = (user.email or "").strip()
        names = [(user.username or "").strip(), email, email.split("@", 1)[0] if "@" in email else ""]
        people[user.id] = tuple(dict.fromkeys(n for n in names if n))
    return people


def _as_user(session: Session, username: str) -> Actor:
    user = find_user(session, username)
    if user is None or not user.is_active:
        raise LabelStudioError(f"--as-user {username!r} is not an active SurgReview user.")
    return actor_of(user)


def _author(session: Session, names: tuple[str, ...], fallback: Actor | None) -> Actor:
    for name in names:
        user = find_user(session, name)
        if user is not None and user.is_active:
            return actor_of(user)
    if fallback is None:
        who = names[0] if names else "an unknown Label Studio user"
        raise LabelStudioError(
            f"No SurgReview user matches the Label Studio annotator {who!r}; "
            "pass --as-user to store their annotations under your name."
        )
    return fallback
