"""From the database to the metric frames: which run counts for each model, and one row per prediction
with its case, frame size and current reference label, in the shapes review.metrics.grounding and
review.metrics.tasks take. Read-only: nothing is written (predictions not parsed yet are parsed in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import Text, and_, cast, func, select
from sqlalchemy.orm import Session

from db.cases import CaseFilter
from db.errors import DomainError, NotFound
from db.schema import Case, Frame, Label, Model, Prediction, Run
from models.parsing import parse_output
from models.parsing.answers import read_action
from models.vocabularies import vocabulary_for

# A run that is no longer running: its predictions are final (a "failed" run finished with some errors,
# which count as wrong answers).
FINISHED = ("done", "imported", "failed")
CASE_COLUMNS = ["model", "run", "case", "case_key", "dataset", "procedure", "split", "video"]
REF_BOX = ["ref_x1", "ref_y1", "ref_x2", "ref_y2"]
ROW_COLUMNS = [
    *CASE_COLUMNS,
    "width",
    "height",
    "label_phase",
    "label_action",
    "label_triplets",
    "label_cvs",
    *REF_BOX,
    "pred_phase",
    "error",
    "prediction",
]
RUN_COLUMNS = ["model", "run", "task", "prompt_version", "status", "finished_at"]


def select_runs(session: Session, task: str, run_ids: Sequence[int] = ()) -> pd.DataFrame:
    """One run per model for ``task`` (RUN_COLUMNS): the newest finished one (by finish, then creation time),
    or, for the models of ``run_ids``, that run. NotFound for an unknown run id; DomainError for a run of
    another task or two chosen runs of one model."""
    columns = (Model.name, Run.id, Run.task, Run.prompt_version, Run.status, Run.finished_at)
    newest = func.coalesce(Run.finished_at, Run.created_at)
    rows = session.execute(
        select(*columns)
        .join(Model, Run.model_id == Model.id)
        .where(Run.task == task, Run.status.in_(FINISHED))
        .order_by(Model.name, newest.desc(), Run.id.desc())
    ).all()
    chosen: dict[str, tuple] = {}
    for row in rows:
        chosen.setdefault(row[0], tuple(row))
    explicit: dict[str, tuple] = {}
    for run_id in run_ids:
        row = session.execute(
            select(*columns).join(Model, Run.model_id == Model.id).where(Run.id == int(run_id))
        ).first()
        if row is None:
            raise NotFound(f"There is no run {run_id}.")
        if row[2] != task:
            raise DomainError(f"Run {run_id} is a {row[2]} run, not {task}.")
        if row[0] in explicit and explicit[row[0]][1] != row[1]:
            raise DomainError(
                f"Runs {explicit[row[0]][1]} and {run_id} are both of model {row[0]}; choose one."
            )
        explicit[row[0]] = tuple(row)
    chosen.update(explicit)
    return pd.DataFrame([chosen[name] for name in sorted(chosen)], columns=RUN_COLUMNS)


def prediction_rows(
    session: Session, task: str, case_filter: CaseFilter, run_ids: Sequence[int] = (), *, parsed: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, rows): the chosen runs (``select_runs``) and one row per prediction of those runs on a case
    of ``case_filter`` that has a current reference label: CASE_COLUMNS, width, height, the label's columns
    (label_phase, label_action, label_triplets, label_cvs, ref_x1..ref_y2), pred_phase, error (bool) and,
    with ``parsed``, the parsed output as the dict of ``ParsedOutput.to_json`` (None for a failed one)."""
    runs = select_runs(session, task, run_ids)
    if runs.empty:
        return runs, pd.DataFrame(columns=ROW_COLUMNS + (["parsed"] if parsed else []))
    # JSON columns read as text and decoded with orjson: several times faster than the JSON type's
    # per-row json.loads, and psycopg's own json adaptation is bypassed the same way.
    wanted = [
        Model.name,
        Prediction.run_id,
        Prediction.case_id,
        Case.key,
        Case.dataset,
        Case.procedure,
        Case.split,
        Case.video,
        Frame.width,
        Frame.height,
        Label.phase,
        Label.action,
        cast(Label.triplets, Text),
        cast(Label.cvs, Text),
        Label.box_x1,
        Label.box_y1,
        Label.box_x2,
        Label.box_y2,
        Prediction.phase,
        Prediction.error.is_not(None),
        Prediction.id,
    ]
    if parsed:
        wanted.append(cast(Prediction.parsed, Text))
    query = (
        select(*wanted)
        .join(Run, Prediction.run_id == Run.id)
        .join(Model, Run.model_id == Model.id)
        .join(Case, Prediction.case_id == Case.id)
        .join(Frame, Case.frame_id == Frame.id)
        .join(Label, and_(Label.case_id == Case.id, Label.is_current))
        .where(Prediction.run_id.in_(runs["run"].tolist()), Prediction.case_id.in_(case_filter.query()))
        .order_by(Model.name, Prediction.case_id)
    )
    names = ROW_COLUMNS + (["parsed"] if parsed else [])
    found = session.execute(query).all()
    rows = pd.DataFrame(
        dict(zip(names, zip(*found, strict=True), strict=True)) if found else {name: [] for name in names},
        columns=names,
    )
    if rows.empty:
        return runs, rows
    rows[REF_BOX] = rows[REF_BOX].astype(float)
    rows["error"] = rows["error"].astype(bool)
    json_columns = {"triplet": ["label_triplets"], "cvs": ["label_cvs"]}.get(task, [])
    for column in json_columns + (["parsed"] if parsed else []):
        rows[column] = [_json(text) for text in rows[column]]
    return runs, _parse_missing(session, task, rows, parsed)


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def _parse_missing(session: Session, task: str, rows: pd.DataFrame, parsed: bool) -> pd.DataFrame:
    """Predictions imported but not parsed yet (no parsed form, no error) parsed here, in memory only."""
    ids = rows.loc[~rows["error"], "prediction"]
    if parsed:
        ids = ids[rows.loc[~rows["error"], "parsed"].isna()]
    else:
        ids = ids[rows.loc[~rows["error"], "pred_phase"].isna()]
    if ids.empty:
        return rows
    found = session.execute(
        select(
            Prediction.id,
            Prediction.raw_text,
            Model.box_convention,
            Case.dataset,
            Case.procedure,
            Frame.width,
            Frame.height,
        )
        .join(Run, Prediction.run_id == Run.id)
        .join(Model, Run.model_id == Model.id)
        .join(Case, Prediction.case_id == Case.id)
        .join(Frame, Case.frame_id == Frame.id)
        # Not "parsed IS NULL": a JSON column may hold a JSON null, which reads as None all the same.
        .where(Prediction.id.in_(ids.tolist()), Prediction.raw_text.is_not(None))
    )
    outputs = {}
    for pid, raw, convention, dataset, procedure, width, height in found:
        outputs[pid] = parse_output(
            raw,
            task=task,
            box_convention=convention or "pixels",
            width=width,
            height=height,
            vocabulary=vocabulary_for(task, dataset, procedure),
        )
    if not outputs:
        return rows
    where = rows["prediction"].isin(list(outputs))
    rows.loc[where, "pred_phase"] = [outputs[p].phase for p in rows.loc[where, "prediction"]]
    if parsed:
        rows.loc[where, "parsed"] = pd.Series(
            [outputs[p].to_json() for p in rows.loc[where, "prediction"]],
            index=rows.index[where],
            dtype=object,
        )
    return rows


@cache
def _phase_id(task: str, dataset: str, procedure: str, phase: str) -> str:
    """The phase id a label's phase names in the task's vocabulary for the case, or the label as written."""
    return vocabulary_for(task, dataset, procedure).normalize_phase(phase) or phase


@cache
def _action_name(action: str) -> str:
    found, _ = read_action(action, None)
    return found or action


def reference_phases(rows: pd.DataFrame, task: str) -> list[str | None]:
    """Each row's reference phase as an id of the task's vocabulary for its case (None: no phase)."""
    phase_task = "gozone" if task == "gozone" else "phase"
    return [
        None if p is None or (isinstance(p, float) and np.isnan(p)) else _phase_id(phase_task, d, pr, p)
        for d, pr, p in zip(rows["dataset"], rows["procedure"], rows["label_phase"], strict=True)
    ]


def _parsed_field(rows: pd.DataFrame, name: str, empty: Any = None) -> list[Any]:
    """One key of each row's parsed output (the dict of ParsedOutput.to_json), ``empty`` where none."""
    return [p.get(name) if p else empty for p in rows["parsed"]]


def _first_box(parsed: dict[str, Any] | None) -> tuple[float, ...]:
    boxes = (parsed or {}).get("boxes") or ()
    return tuple(float(v) for v in boxes[0]["box"]) if boxes else (np.nan,) * 4


def grounding_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The input of review.metrics.grounding: reference phase and box, predicted phase and first box."""
    boxes = np.array([_first_box(p) for p in rows["parsed"]], dtype=float).reshape(len(rows), 4)
    frame = rows[[*CASE_COLUMNS, "width", "height", *REF_BOX, "error"]].copy()
    frame["ref_phase"] = reference_phases(rows, "gozone")
    frame["pred_phase"] = rows["pred_phase"].where(rows["pred_phase"].notna(), None)
    for index, corner in enumerate(("x1", "y1", "x2", "y2")):
        frame[f"pred_{corner}"] = boxes[:, index]
    return frame


def classification_frame(rows: pd.DataFrame, task: str) -> pd.DataFrame:
    """The input of classification_metrics for the phase or action task: ``ref`` and ``pred`` classes."""
    frame = rows[[*CASE_COLUMNS, "error"]].copy()
    frame["ref_phase"] = reference_phases(rows, task)
    if task == "action":
        frame["ref"] = [None if a is None else _action_name(a) for a in rows["label_action"]]
        frame["pred"] = _parsed_field(rows, "action")
    else:
        frame["ref"] = frame["ref_phase"]
        frame["pred"] = rows["pred_phase"].where(rows["pred_phase"].notna(), None)
    return frame


def triplet_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The input of score_triplets: reference and predicted triplet lists."""
    frame = rows[[*CASE_COLUMNS, "error"]].copy()
    frame["ref_phase"] = reference_phases(rows, "phase")
    frame["ref_triplets"] = rows["label_triplets"]
    frame["pred_triplets"] = [t or [] for t in _parsed_field(rows, "triplets", [])]
    return frame


def cvs_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The input of score_cvs: reference and predicted CVS dicts."""
    frame = rows[[*CASE_COLUMNS, "error"]].copy()
    frame["ref_phase"] = reference_phases(rows, "phase")
    frame["ref_cvs"] = rows["label_cvs"]
    frame["pred_cvs"] = [c or {} for c in _parsed_field(rows, "cvs", {})]
    return frame
