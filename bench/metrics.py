"""Benchmark metrics over 100,000 predictions, in seconds, measured in one run.

    python -m bench.metrics [--predictions 100000] [--models 4] [--boot 1000] [--no-db]

1. Pure metrics in this process: Go Zone grounding (all eleven metrics, per model, with --boot bootstrap
   rounds resampling cases) over N synthetic predictions (N / models cases, each model predicting every case),
   phase classification (accuracy and macro precision, recall, Jaccard) with intervals, and the per-phase
   breakdown.
2. Unless --no-db: the same N Go Zone predictions bulk-inserted into a temporary SQLite database (parsed
   JSON as the runner stores it), then the whole ``review.metrics.leaderboard.leaderboard`` call timed: query,
   JSON decoding, scoring and bootstrap.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert

from db.cases import CaseFilter
from db.engine import Database
from db.migrate import upgrade
from db.schema import Case, Frame, Label, Model, Prediction, Run
from review.metrics import grounding, tasks
from review.metrics.leaderboard import leaderboard

PHASES = "ABCD"
WIDTH, HEIGHT = 854, 480


def synthetic(n_predictions: int, n_models: int, seed: int = 0) -> pd.DataFrame:
    """Grounding rows: every model predicts every case; better models are nearer the reference."""
    rng = np.random.default_rng(seed)
    n_cases = n_predictions // n_models
    x, y = rng.uniform(0, 600, n_cases), rng.uniform(0, 300, n_cases)
    ref_phase = rng.choice(list(PHASES), n_cases)
    parts = []
    for m in range(n_models):
        skill = (m + 1) / (n_models + 1)
        shift = rng.normal(0, 120 * (1 - skill), size=(n_cases, 2))
        right = rng.random(n_cases) < skill
        pred_phase = np.where(right, ref_phase, rng.choice(list(PHASES), n_cases))
        parts.append(
            pd.DataFrame(
                {
                    "model": f"bench-{m}",
                    "case": np.arange(n_cases),
                    "width": WIDTH,
                    "height": HEIGHT,
                    "ref_phase": ref_phase,
                    "pred_phase": pred_phase,
                    "ref_x1": x,
                    "ref_y1": y,
                    "ref_x2": x + 200,
                    "ref_y2": y + 150,
                    "pred_x1": x + shift[:, 0],
                    "pred_y1": y + shift[:, 1],
                    "pred_x2": x + shift[:, 0] + 200,
                    "pred_y2": y + shift[:, 1] + 150,
                    "dataset": "bench",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    print(f"  {label:<58} {time.perf_counter() - start:7.2f} s")
    return result


def pure(rows: pd.DataFrame, n_boot: int) -> None:
    print(
        f"pure metrics, {len(rows):,} predictions ({rows['case'].nunique():,} cases x "
        f"{rows['model'].nunique()} models), {n_boot} bootstrap rounds:"
    )
    start = time.perf_counter()
    scored = _timed(
        "grounding scores (IoU, centre distance, thresholds)", lambda: grounding.score_grounding(rows)
    )
    _timed(
        "grounding metrics per model with intervals",
        lambda: grounding.grounding_metrics(scored, n_boot=n_boot),
    )
    classes = rows.assign(ref=rows["ref_phase"], pred=rows["pred_phase"])
    _timed(
        "phase accuracy + macro P/R/Jaccard with intervals",
        lambda: tasks.classification_metrics(classes, n_boot=n_boot),
    )
    _timed(
        "grounding per model and phase (200 rounds)",
        lambda: grounding.grounding_metrics(scored, by=["model", "ref_phase"], n_boot=200),
    )
    print(f"  {'total':<58} {time.perf_counter() - start:7.2f} s")


def populate(database: Database, rows: pd.DataFrame) -> None:
    """Frames, cases with a current Go Zone label, models, one gozone run each, parsed predictions."""
    cases = rows.drop_duplicates("case")
    n_cases = len(cases)
    with database.session_scope() as session:
        session.execute(
            insert(Frame),
            [
                {
                    "id": i + 1,
                    "sha256": f"{i + 1:064x}",
                    "width": WIDTH,
                    "height": HEIGHT,
                    "format": "PNG",
                    "size_bytes": 1,
                    "path": f"x/{i}.png",
                }
                for i in range(n_cases)
            ],
        )
        session.execute(
            insert(Case),
            [
                {
                    "id": i + 1,
                    "key": f"bench/v/{i}",
                    "frame_id": i + 1,
                    "dataset": "bench",
                    "procedure": "laparoscopic_cholecystectomy",
                    "split": "test",
                }
                for i in range(n_cases)
            ],
        )
        session.execute(
            insert(Label),
            [
                {
                    "case_id": int(c) + 1,
                    "source": "bench",
                    "is_current": True,
                    "phase": p,
                    "content_sha256": "0" * 64,
                    "box_x1": x1,
                    "box_y1": y1,
                    "box_x2": x2,
                    "box_y2": y2,
                }
                for c, p, x1, y1, x2, y2 in cases[
                    ["case", "ref_phase", "ref_x1", "ref_y1", "ref_x2", "ref_y2"]
                ].itertuples(index=False)
            ],
        )
        for m, (model, part) in enumerate(rows.groupby("model")):
            session.execute(insert(Model), [{"id": m + 1, "name": model, "backend": "replay"}])
            session.execute(
                insert(Run),
                [
                    {
                        "id": m + 1,
                        "model_id": m + 1,
                        "task": "gozone",
                        "prompt_version": "b",
                        "params_sha256": f"{m:064x}",
                        "status": "done",
                    }
                ],
            )
            session.execute(
                insert(Prediction),
                [
                    {
                        "run_id": m + 1,
                        "case_id": int(c) + 1,
                        "phase": p,
                        "parsed": {
                            "version": 1,
                            "phase": p,
                            "answer": "...",
                            "levels": {},
                            "warnings": [],
                            "boxes": [
                                {"label": None, "box": [x1, y1, x2, y2], "clipped": False, "swapped": False}
                            ],
                        },
                    }
                    for c, p, x1, y1, x2, y2 in part[
                        ["case", "pred_phase", "pred_x1", "pred_y1", "pred_x2", "pred_y2"]
                    ].itertuples(index=False)
                ],
            )


def from_database(rows: pd.DataFrame, n_boot: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        database = Database.from_url(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(database.engine)
        start = time.perf_counter()
        populate(database, rows)
        print(
            f"SQLite: {len(rows):,} predictions inserted in {time.perf_counter() - start:.1f} s "
            "(not timed below)"
        )
        with database.session_scope() as session:
            board = _timed(
                f"leaderboard(gozone) from the database, {n_boot} rounds",
                lambda: leaderboard(session, "gozone", CaseFilter(), n_boot=n_boot),
            )
        print(
            board.table()[["model", "phase_acc", "acc25", "miou", "h_acc25", "h_miou", "n"]]
            .round(3)
            .to_string(index=False)
        )
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--no-db", action="store_true")
    args = parser.parse_args()
    rows = synthetic(args.predictions, args.models)
    pure(rows, args.boot)
    if not args.no_db:
        from_database(rows, args.boot)


if __name__ == "__main__":
    main()
