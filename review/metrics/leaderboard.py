"""Per-model leaderboards of the benchmark metrics over a case set, with 95 % bootstrap intervals.

``leaderboard`` loads the chosen run of every model for a task (review.metrics.data), scores each
prediction against the case's current reference label and aggregates per model (or per model and group).
``arena`` is Surg-R1's Arena Score: per model, the mean of its primary metric over the benchmarks it was
evaluated on, a benchmark being a (task, dataset) pair of the Arena tasks (triplet accuracy, phase accuracy,
action accuracy, CVS overall accuracy); its interval averages the benchmarks' bootstrap rounds.
Services take a session and never write.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from db.cases import CaseFilter
from db.errors import DomainError, NotFound
from db.schema import Run
from review.metrics import data, grounding, tasks
from review.metrics.bootstrap import Resampled, ratio_table

TASKS = ("gozone", "phase", "action", "triplet", "cvs")
CHOICES = (*TASKS, "arena")
ARENA_TASKS = ("triplet", "phase", "action", "cvs")
PRIMARY = {
    "gozone": "h_acc25",
    "phase": "accuracy",
    "action": "accuracy",
    "triplet": "triplet_acc",
    "cvs": "cvs_acc",
    "arena": "arena",
}
METRICS = {
    "gozone": tuple(m.name for m in grounding.METRICS),
    "phase": tasks.CLASSIFICATION,
    "action": tasks.CLASSIFICATION,
    "triplet": tuple(m.name for m in tasks.TRIPLET_METRICS),
    "cvs": tuple(m.name for m in tasks.CVS_METRICS),
    "arena": ("arena",),
}
LABELS = {**grounding.LABELS, **tasks.LABELS, "arena": "Arena Score"}
LOWER_IS_BETTER = grounding.LOWER_IS_BETTER
# The reference class a task's per-class breakdown and confusion matrix use.
CLASS_COLUMN = {
    "gozone": "ref_phase",
    "phase": "ref",
    "action": "ref",
    "triplet": "ref_phase",
    "cvs": "ref_phase",
}
CONFUSION_COLUMNS = {
    "gozone": ("ref_phase", "pred_phase"),
    "phase": ("ref", "pred"),
    "action": ("ref", "pred"),
}


@dataclass
class Leaderboard:
    """A task's metrics over one case set: ``metrics`` long [*by, metric, label, value, lo, hi, n]
    (fractions), the ``runs`` used, and the scored ``rows`` (one per prediction) the charts draw from."""

    task: str
    metrics: pd.DataFrame
    runs: pd.DataFrame
    rows: pd.DataFrame = field(repr=False)
    by: tuple[str, ...] = ()

    def table(self) -> pd.DataFrame:
        """One row per model (and group of ``by``): each metric with its ``_lo`` and ``_hi`` columns, and n
        (predictions scored); sorted by the task's primary metric, best first."""
        keys = ["model", *self.by]
        if self.metrics.empty:
            return pd.DataFrame(columns=[*keys, "n"])
        order = list(dict.fromkeys(self.metrics["metric"]))
        wide = self.metrics.pivot_table(
            index=keys, columns="metric", values=["value", "lo", "hi"], aggfunc="first", dropna=False
        )
        out = pd.DataFrame(index=wide.index)
        for metric in order:
            out[metric] = wide[("value", metric)]
            out[f"{metric}_lo"], out[f"{metric}_hi"] = wide[("lo", metric)], wide[("hi", metric)]
        out["n"] = self.metrics.groupby(keys)["n"].max()
        primary = PRIMARY[self.task]
        ascending = primary in LOWER_IS_BETTER
        return out.reset_index().sort_values(
            [primary, "model"], ascending=[ascending, True], na_position="last", ignore_index=True
        )


def scored_rows(
    session: Session, task: str, case_filter: CaseFilter, run_ids: Sequence[int] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, scored rows) of ``task``: one row per prediction of the chosen runs with its scores."""
    if task not in TASKS:
        raise DomainError(f"Unknown task {task!r}; choose one of {', '.join(CHOICES)}.")
    runs, rows = data.prediction_rows(session, task, case_filter, run_ids, parsed=task != "phase")
    return runs, score(task, rows)


def score(task: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The task's metric input built from ``data.prediction_rows`` rows, scored per row."""
    if task == "gozone":
        return grounding.score_grounding(data.grounding_frame(rows))
    if task in ("phase", "action"):
        frame = data.classification_frame(rows, task)
        return frame.assign(correct=(frame["ref"].notna() & (frame["pred"] == frame["ref"])).astype(float))
    if task == "triplet":
        return tasks.score_triplets(data.triplet_frame(rows))
    return tasks.score_cvs(data.cvs_frame(rows))


def aggregate(
    task: str, rows: pd.DataFrame, *, by: Sequence[str] = ("model",), n_boot: int = 1000, seed: int = 0
) -> tuple[pd.DataFrame, Resampled]:
    """Long metric table [*by, metric, value, lo, hi, n] of scored ``rows`` and its bootstrap rounds."""
    by = list(by)
    if task in ("phase", "action"):
        return tasks.classification_resampled(rows, by=by, n_boot=n_boot, seed=seed)
    specs = {"gozone": grounding.METRICS, "triplet": tasks.TRIPLET_METRICS, "cvs": tasks.CVS_METRICS}[task]
    return ratio_table(rows, specs, by=by, n_boot=n_boot, seed=seed)


def leaderboard(
    session: Session,
    task: str,
    case_filter: CaseFilter,
    *,
    run_ids: Sequence[int] = (),
    by: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
) -> Leaderboard:
    """The ``task`` leaderboard (or ``arena``) of every model with a finished run over ``case_filter``'s
    cases that have a reference label, per model and per group of the ``by`` columns (e.g. dataset)."""
    if task == "arena":
        return arena(session, case_filter, run_ids=run_ids, n_boot=n_boot, seed=seed)
    runs, rows = scored_rows(session, task, case_filter, run_ids)
    table, _ = aggregate(task, rows, by=["model", *by], n_boot=n_boot, seed=seed)
    return Leaderboard(task, _labelled(table), runs, rows, tuple(by))


@dataclass
class Dashboard:
    """What the Dashboard tab shows for one task and case set."""

    board: Leaderboard
    per_class: pd.DataFrame  # the board's metrics per model and reference class (CLASS_COLUMN)
    per_dataset: pd.DataFrame
    confusion: pd.DataFrame
    class_column: str | None


def dashboard(
    session: Session, task: str, case_filter: CaseFilter, *, n_boot: int = 1000, seed: int = 0
) -> Dashboard:
    """The leaderboard of ``task`` over ``case_filter`` with its breakdowns per reference class and per
    dataset (fewer bootstrap rounds: they are charts) and the confusion counts of class tasks."""
    board = leaderboard(session, task, case_filter, n_boot=n_boot, seed=seed)
    if task == "arena":
        per_dataset = board.metrics[board.metrics["metric"] != "arena"]
        empty = breakdown(board, "dataset")
        return Dashboard(board, empty, per_dataset, confusion(board), None)
    column = CLASS_COLUMN[task]
    small = min(n_boot, 200)
    return Dashboard(
        board,
        breakdown(board, column, n_boot=small, seed=seed),
        breakdown(board, "dataset", n_boot=small, seed=seed),
        confusion(board),
        column,
    )


def breakdown(board: Leaderboard, column: str, *, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """The board's metrics per model and value of ``column`` of its rows (e.g. ref_phase, dataset)."""
    if board.task == "arena" or board.rows.empty:
        return pd.DataFrame(columns=["model", column, "metric", "label", "value", "lo", "hi", "n"])
    table, _ = aggregate(board.task, board.rows, by=["model", column], n_boot=n_boot, seed=seed)
    return _labelled(table)


def confusion(board: Leaderboard) -> pd.DataFrame:
    """Counts [model, reference, predicted, count] of a phase, action or Go Zone board (empty otherwise)."""
    if board.task not in CONFUSION_COLUMNS or board.rows.empty:
        return pd.DataFrame(columns=["model", "reference", "predicted", "count"])
    ref, pred = CONFUSION_COLUMNS[board.task]
    return tasks.confusion(board.rows, ref=ref, pred=pred)


def arena(
    session: Session,
    case_filter: CaseFilter,
    *,
    run_ids: Sequence[int] = (),
    n_boot: int = 1000,
    seed: int = 0,
) -> Leaderboard:
    """Arena Score per model: metrics ``arena`` and one ``<task>/<dataset>`` per benchmark (its primary
    metric); ``n`` of the arena row = benchmarks the model was evaluated on."""
    benchmarks, rounds, all_runs = [], [], []
    run_tasks = {r: _run_task(session, r) for r in run_ids}
    for task in ARENA_TASKS:
        chosen = [r for r in run_ids if run_tasks[r] == task]
        runs, rows = scored_rows(session, task, case_filter, chosen)
        all_runs.append(runs)
        if rows.empty:
            continue
        table, result = aggregate(task, rows, by=["model", "dataset"], n_boot=n_boot, seed=seed)
        primary = (table["metric"] == PRIMARY[task]).to_numpy()
        part = table[primary].assign(metric=lambda t, task=task: task + "/" + t["dataset"].astype(str))
        benchmarks.append(part.drop(columns="dataset"))
        rounds.append(result.rounds[:, primary] if len(result.rounds) else np.empty((0, int(primary.sum()))))
    runs = pd.concat(all_runs, ignore_index=True) if all_runs else pd.DataFrame(columns=data.RUN_COLUMNS)
    if not benchmarks:
        empty = pd.DataFrame(columns=["model", "metric", "label", "value", "lo", "hi", "n"])
        return Leaderboard("arena", empty, runs, pd.DataFrame())
    parts = pd.concat(benchmarks, ignore_index=True)
    boot = np.hstack(rounds)
    scores = []
    for model, index in parts.groupby("model").groups.items():
        columns = parts.index.get_indexer(index)
        values = parts.loc[index, "value"].to_numpy(float)
        with warnings.catch_warnings():  # a round where none of the model's benchmarks has a value: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            per_round = np.nanmean(boot[:, columns], axis=1) if len(boot) else np.empty(0)
        lo, hi = Resampled(np.array([np.nanmean(values)]), per_round[:, None]).interval()
        scores.append(
            {
                "model": model,
                "metric": "arena",
                "value": float(np.nanmean(values)),
                "lo": float(lo[0]),
                "hi": float(hi[0]),
                "n": int(np.isfinite(values).sum()),
            }
        )
    table = pd.concat([pd.DataFrame(scores), parts], ignore_index=True)
    return Leaderboard("arena", _labelled(table), runs, parts)


def _run_task(session: Session, run_id: int) -> str:
    run = session.get(Run, int(run_id))
    if run is None:
        raise NotFound(f"There is no run {run_id}.")
    return run.task


def _labelled(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``label`` column (the metric's display name) after ``metric``."""
    labels = [LABELS.get(m, m) for m in table["metric"]]
    out = table.copy()
    out.insert(out.columns.get_loc("metric") + 1, "label", labels)
    return out
