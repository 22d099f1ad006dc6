"""A leaderboard written out: a plain-text table for people, CSV and JSON for programs. Pure functions."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from db.cases import CaseFilter
from review.metrics.leaderboard import LABELS, Leaderboard

FORMATS = ("table", "csv", "json")
JSON_VERSION = 1


def render(board: Leaderboard, fmt: str, *, case_filter: CaseFilter, n_boot: int, seed: int) -> str:
    """``board`` as text in ``fmt`` (one of FORMATS)."""
    if fmt == "csv":
        return board.table().to_csv(index=False)
    if fmt == "json":
        return as_json(board, case_filter=case_filter, n_boot=n_boot, seed=seed)
    if fmt == "table":
        return as_text(board, n_boot=n_boot, seed=seed)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _cell(value: float, lo: float, hi: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if lo is None or math.isnan(lo):
        return f"{100 * value:.1f}"
    return f"{100 * value:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def as_text(board: Leaderboard, *, n_boot: int, seed: int) -> str:
    """Metrics as rows, models (and groups) as columns; values in %, 95 % intervals in brackets."""
    if board.metrics.empty:
        return f"{board.task}: no predictions with a reference label to score\n"
    keys = ["model", *board.by]
    long = board.metrics.copy()
    long["column"] = long[keys].astype(str).agg(" · ".join, axis=1)
    long["cell"] = [_cell(v, lo, hi) for v, lo, hi in zip(long["value"], long["lo"], long["hi"], strict=True)]
    order = list(dict.fromkeys(board.table()[keys].astype(str).agg(" · ".join, axis=1)))
    grid = long.pivot_table(index="metric", columns="column", values="cell", aggfunc="first", sort=False)
    grid = grid.reindex(columns=order).fillna("-")
    grid.index = [LABELS.get(m, m) for m in grid.index]
    counts = long.groupby("column")["n"].max().reindex(order)
    grid.loc["n"] = [str(int(c)) for c in counts]
    grid.columns.name = None
    lines = [
        f"{board.task} leaderboard (values in %; CD in % of the image diagonal, lower is better; "
        f"95 % bootstrap intervals over cases, {n_boot} rounds, seed {seed})",
        grid.to_string(),
    ]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if value is pd.NaT:
        return None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def as_json(board: Leaderboard, *, case_filter: CaseFilter, n_boot: int, seed: int) -> str:
    """A JSON document: task, filter, bootstrap settings, the runs used, the leaderboard rows and the long
    metric table; NaN becomes null."""
    document = {
        "version": JSON_VERSION,
        "task": board.task,
        "by": list(board.by),
        "filter": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(case_filter).items()},
        "bootstrap": {"rounds": n_boot, "seed": seed, "level": 0.95, "unit": "case"},
        "runs": _records(board.runs),
        "leaderboard": _records(board.table()),
        "metrics": _records(board.metrics),
    }
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
