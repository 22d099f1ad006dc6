"""Push to Label Studio: the matching cases become tasks (their frame, case key and id), with a model's Go
Zone proposal as a prediction. Idempotent: a task carries our case key and a case is pushed to a project once;
an existing task only gains the model's prediction when it lacks one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from label_studio_sdk import LabelStudio
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation import workflow
from annotation.importers.common import ImportSummary
from annotation.labelstudio import payloads
from annotation.labelstudio.client import (
    LabelStudioError,
    SyncResult,
    calling,
    ensure_project,
    field_of,
    project_tasks,
)
from annotation.workflow import GoZoneDraft
from db import audit
from db.cases import CaseFilter, find_case_ids
from db.errors import NotFound
from db.frames import FrameStore
from db.schema import Case, Model, Prediction, Run
from models.vocabularies import Vocabulary

IMPORT_BATCH = 20  # tasks per import request: each carries a whole frame as base64


def push(
    session: Session,
    store: FrameStore,
    client: LabelStudio,
    *,
    project: str | int,
    case_filter: CaseFilter,
    model: str | None = None,
    actor_label: str = "system",
) -> SyncResult:
    """Push the cases matching ``case_filter`` to ``project`` (created or reused by title), with ``model``'s
    newest Go Zone prediction of each case as a Label Studio prediction. Cases already in the project are
    not pushed again; they only get the model's prediction when they lack it."""
    cases = list(
        session.scalars(
            select(Case).where(Case.id.in_(find_case_ids(session, case_filter))).order_by(Case.key)
        )
    )
    if not cases:
        raise NotFound("No case matches the filter; nothing to push.")
    vocabulary = _one_vocabulary(cases)
    predictions = model_predictions(session, model, [c.id for c in cases]) if model else {}
    project_id, _ = ensure_project(client, project, payloads.labeling_config(vocabulary))
    existing = {(t.data or {}).get(payloads.CASE_KEY): t for t in project_tasks(client, project_id)}
    summary = ImportSummary("Label Studio push")
    new_tasks: list[tuple[str, dict[str, Any]]] = []
    for case in cases:
        proposal = None
        if model:
            proposal = _prediction_result(case, predictions.get(case.id), vocabulary)
            if proposal is None:
                summary.warnings.append((case.key, f"{model} has no Go Zone prediction for this case"))
        if case.key in existing:
            summary.duplicates.append(case.key)
            _add_missing_prediction(client, existing[case.key], model, proposal)
            continue
        task = _new_task(store, case, model, proposal, summary)
        if task is not None:
            new_tasks.append((case.key, task))
    for start in range(0, len(new_tasks), IMPORT_BATCH):
        batch = new_tasks[start : start + IMPORT_BATCH]
        with calling(f"the import into project {project_id}"):
            client.projects.import_tasks(id=project_id, request=[task for _, task in batch])
        summary.imported += [key for key, _ in batch]
    audit.record(
        session,
        "labelstudio.push",
        actor_label=actor_label,
        entity_type="labelstudio_project",
        entity_id=project_id,
        payload={"model": model, **summary.counts},
    )
    return SyncResult(project_id, summary)


def _new_task(
    store: FrameStore,
    case: Case,
    model: str | None,
    proposal: list[dict[str, Any]] | None,
    summary: ImportSummary,
) -> dict[str, Any] | None:
    """The import payload of ``case`` (its frame, key and the model's proposal), or None with the reason
    recorded when its frame cannot be read."""
    try:
        data = payloads.task_data(case.key, case.id, store.read(case.frame), case.frame.format)
    except OSError as exc:
        summary.rejected.append((case.key, f"cannot read the frame: {exc}"))
        return None
    task: dict[str, Any] = {"data": data}
    if model and proposal is not None:
        task["predictions"] = [payloads.prediction_payload(model, proposal)]
    return task


def _add_missing_prediction(
    client: LabelStudio, task: Any, model: str | None, proposal: list[dict[str, Any]] | None
) -> None:
    """Give an already pushed task ``model``'s proposal unless it holds one from that model already."""
    if model and proposal is not None and not _has_model(task, model):
        with calling(f"task {task.id}"):
            client.predictions.create(task=task.id, **payloads.prediction_payload(model, proposal))


def _one_vocabulary(cases: Sequence[Case]) -> Vocabulary:
    """The Go Zone phase vocabulary all ``cases`` share (one project has one list of phase choices)."""
    vocabularies = {workflow.gozone_vocabulary(c).name: workflow.gozone_vocabulary(c) for c in cases}
    if len(vocabularies) > 1:
        raise LabelStudioError(
            f"The cases use different phase vocabularies ({', '.join(sorted(vocabularies))}); "
            "push each procedure to a project of its own."
        )
    return next(iter(vocabularies.values()))


def model_predictions(session: Session, model: str, case_ids: Sequence[int]) -> dict[int, Prediction]:
    """The newest usable Go Zone prediction of ``model`` per case (NotFound for an unknown model)."""
    if session.scalar(select(Model.id).where(Model.name == model)) is None:
        raise NotFound(f"There is no model {model!r}.")
    rows = session.scalars(
        select(Prediction)
        .join(Run)
        .join(Model)
        .where(
            Model.name == model,
            Run.task == "gozone",
            Prediction.case_id.in_(case_ids),
            Prediction.error.is_(None),
            Prediction.parsed.is_not(None),
        )
        .order_by(Run.id.desc(), Prediction.id.desc())
    )
    newest: dict[int, Prediction] = {}
    for row in rows:
        newest.setdefault(row.case_id, row)
    return newest


def prediction_draft(prediction: Prediction) -> GoZoneDraft:
    """What a stored prediction proposes: its first box, phase and rationale parts."""
    parsed = prediction.parsed or {}
    boxes = parsed.get("boxes") or []
    rationale = parsed.get("rationale") or {}
    return GoZoneDraft(
        phase=prediction.phase or parsed.get("phase"),
        box=tuple(boxes[0]["box"]) if boxes else None,
        **{name: rationale.get(name) for name in workflow.TEXT_FIELDS},
    )


def _prediction_result(
    case: Case, prediction: Prediction | None, vocabulary: Vocabulary
) -> list[dict[str, Any]] | None:
    if prediction is None:
        return None
    return payloads.draft_result(
        prediction_draft(prediction), case.frame.width, case.frame.height, vocabulary
    )


def _has_model(task: Any, model: str) -> bool:
    return any(field_of(p, "model_version") == model for p in (task.predictions or []))
