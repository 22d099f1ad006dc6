"""Blind review speed, measured in one run on SQLite and PostgreSQL.

    python -m bench.review [--cases 10000] [--reviewers 20] [--actions 400] [--judgments 100000]
                           [--boot 1000] [--no-postgres]

For each database: bulk-inserts a synthetic study world (N cases, 3 models with a parsed Go Zone prediction
each, reviewers), creates a k=3 study through ``review.studies.create_study`` (timed), then times the server
side of the reviewer's key press - one ``session_scope`` holding ``submit_judgment`` and ``next_item``, commit
included - against a bare single-row insert-and-select transaction on the same database, and prints p50 / p95
of both and their ratio. Then times every statistic of ``review.stats`` over a synthetic set of 100,000
judgments (3 models, 1,000 bootstrap rounds) in this process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select

from db.cases import CaseFilter
from db.engine import Database
from db.migrate import upgrade
from db.schema import AuditEvent, Case, Frame, Label, Model, Prediction, Run
from db.users import actor_of, create_user
from review import stats, studies
from tests.conftest import create_postgres_database

MODELS = ("bench-strong", "bench-middle", "bench-weak")
PHASES = "ABCD"


def _prediction(rng: np.random.Generator, case_id: int) -> dict:
    x, y = float(rng.uniform(0, 600)), float(rng.uniform(0, 300))
    phase = PHASES[int(rng.integers(4))]
    return {"version": 1, "phase": phase, "answer": phase,
            "levels": {"1": "A grasper retracts the gallbladder fundus; a hook dissects at the centre.",
                       "2": "Triplets: hook, dissect, peritoneum.", "3": f"The phase is {phase}."},
            "rationale": {"location": "Inside Calot's triangle.", "exposure": "Adequate.",
                          "next_action": "Continue the dissection.", "critical_risk": "Common bile duct."},
            "boxes": [{"label": "go zone", "box": [x, y, x + 120.0, y + 90.0], "clipped": False,
                       "swapped": False}],
            "warnings": []}


def populate(database: Database, n_cases: int, seed: int = 0) -> None:
    """Frames, cases, half of them labelled, 3 models with one Go Zone run and one prediction per case."""
    rng = np.random.default_rng(seed)
    rows = {
        Frame: [{"id": i, "sha256": f"{i:064x}", "width": 854, "height": 480, "format": "PNG",
                 "size_bytes": 1000, "path": f"xx/{i}.png"} for i in range(1, n_cases + 1)],
        Case: [{"id": i, "key": f"bench/v{i // 500:03d}/{i:06d}", "frame_id": i, "dataset": "bench",
                "procedure": "laparoscopic_cholecystectomy", "video": f"v{i // 500:03d}", "frame_index": i}
               for i in range(1, n_cases + 1)],
        Label: [{"case_id": i, "source": "bench", "is_current": True, "phase": "B",
                 "content_sha256": "0" * 64} for i in range(1, n_cases + 1, 2)],
        Model: [{"id": m, "name": name, "backend": "replay", "settings": {}}
                for m, name in enumerate(MODELS, 1)],
        Run: [{"id": m, "model_id": m, "task": "gozone", "prompt_version": "bench", "params": {},
               "params_sha256": "0" * 64, "status": "imported"} for m in range(1, len(MODELS) + 1)],
        Prediction: [{"run_id": m, "case_id": i, "parsed": _prediction(rng, i)}
                     for i in range(1, n_cases + 1) for m in range(1, len(MODELS) + 1)],
    }
    with database.session_scope() as session:
        for table, values in rows.items():
            for start in range(0, len(values), 5000):
                session.execute(insert(table), values[start:start + 5000])


def make_study(database: Database, n_reviewers: int) -> tuple[int, list, float]:
    """(study id, reviewer actors, seconds to create the study)."""
    with database.session_scope() as session:
        admin = actor_of(create_user(session, "bench-admin", roles=["admin"]))
        reviewers = [actor_of(create_user(session, f"bench-r{i:02d}", roles=["reviewer"]))
                     for i in range(n_reviewers)]
    started = time.perf_counter()
    with database.session_scope() as session:
        setup = studies.create_study(session, admin, name="bench", task="gozone", model_names=list(MODELS),
                                     case_filter=CaseFilter(dataset="bench"),
                                     reviewers=[r.username for r in reviewers], k=3, seed=1)
        study_id = setup.study.id
    return study_id, reviewers, time.perf_counter() - started


def judge_and_next(database: Database, study_id: int, reviewers: list, actions: int) -> list[float]:
    """Seconds per key press: store a judgment of the current item and load the next, in one transaction."""
    tokens = {}
    with database.session_scope() as session:
        for reviewer in reviewers:
            tokens[reviewer.user_id] = studies.next_item(session, reviewer, study_id).item.token
    ratings = {letter: {"correct": 1, "levels": {1: "correct", 2: "wrong", 3: "na"}, "flags": []}
               for letter in "ABC"}
    times = []
    for n in range(actions):
        reviewer = reviewers[n % len(reviewers)]
        started = time.perf_counter()
        with database.session_scope() as session:
            studies.submit_judgment(session, reviewer, tokens[reviewer.user_id], "ABC"[n % 3], ratings,
                                    time_spent_ms=4000)
            tokens[reviewer.user_id] = studies.next_item(session, reviewer, study_id).item.token
        times.append(time.perf_counter() - started)
    return times


def bare_insert_select(database: Database, actions: int) -> list[float]:
    """Seconds per transaction that inserts one small row and selects it back: the floor of any write."""
    times = []
    for n in range(actions):
        started = time.perf_counter()
        with database.session_scope() as session:
            event = AuditEvent(action="bench", payload={"n": n})
            session.add(event)
            session.flush()
            session.scalar(select(AuditEvent.action).where(AuditEvent.id == event.id))
        times.append(time.perf_counter() - started)
    return times


def run_database(label: str, url: str, args: argparse.Namespace) -> None:
    """Populate, create the study and time key presses against the bare floor on the database at ``url``."""
    database = Database.from_url(url)
    upgrade(database.engine)
    started = time.perf_counter()
    populate(database, args.cases)
    print(f"{label}: {args.cases} cases x {len(MODELS)} predictions inserted in "
          f"{time.perf_counter() - started:.1f} s")
    study_id, reviewers, created = make_study(database, args.reviewers)
    print(f"{label}: create_study ({args.cases} cases, k=3, {args.reviewers} reviewers, "
          f"{args.cases * 3} items): {created:.1f} s")
    bare_insert_select(database, 20)  # warm up the pool and caches
    judge_and_next(database, study_id, reviewers, 20)
    floor = np.array(bare_insert_select(database, args.actions)) * 1000
    press = np.array(judge_and_next(database, study_id, reviewers, args.actions)) * 1000
    for name, times in (("bare insert+select", floor), ("submit + next item", press)):
        p50, p95 = np.percentile(times, [50, 95])
        print(f"{label}: {name:<19} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")
    (press50, press95), (floor50, floor95) = np.percentile(press, [50, 95]), np.percentile(floor, [50, 95])
    print(f"{label}: ratio submit+next / bare   p50 {press50 / floor50:5.1f}x   "
          f"p95 {press95 / floor95:5.1f}x")
    database.dispose()


def synthetic_ratings(n_judgments: int, n_reviewers: int = 20, seed: int = 0) -> pd.DataFrame:
    """The ratings frame of review.stats for ``n_judgments`` judgments of 3 models (10 per case)."""
    rng = np.random.default_rng(seed)
    items = np.arange(n_judgments)
    pick = rng.choice(4, size=n_judgments, p=[0.55, 0.25, 0.1, 0.1])  # 3 = none acceptable
    frame = pd.DataFrame({
        "item": np.repeat(items, 3), "case": np.repeat(items // 10, 3),
        "reviewer": np.repeat([f"R-{(i * 7 + i // 10) % n_reviewers:02d}" for i in items], 3),
        "model": np.tile(MODELS, n_judgments), "best": np.repeat(pick, 3) == np.tile([0, 1, 2], n_judgments),
        "correct": (rng.random(3 * n_judgments) < np.tile([0.8, 0.5, 0.2], n_judgments)).astype(int),
    })
    marks = np.array(["correct", "wrong", "na"])
    for level in (1, 2, 3):
        frame[f"level{level}"] = marks[rng.choice(3, size=len(frame), p=[0.6, 0.3, 0.1])]
    return frame


def statistics(n_judgments: int, n_boot: int) -> None:
    """Print the time of each review statistic over ``n_judgments`` synthetic judgments."""
    ratings = synthetic_ratings(n_judgments)
    print(f"statistics over {n_judgments} judgments ({len(ratings)} rated outputs), "
          f"{n_boot} bootstrap rounds:")
    total = 0.0
    battles = None
    steps: list[tuple[str, Callable[[], object]]] = [
        ("selected ratio + CI", lambda: stats.selected_ratio(ratings, n_boot=n_boot)),
        ("accuracy rating + CI", lambda: stats.accuracy_rating(ratings, n_boot=n_boot)),
        ("level error rates", lambda: stats.level_error_rates(ratings)),
        ("battles from best picks", lambda: stats.battles(ratings)),
        ("Bradley-Terry + CI", lambda: stats.bradley_terry(battles, n_boot=n_boot)),
        ("agreement (kappa, alpha)", lambda: stats.agreement(ratings)),
    ]
    for name, step in steps:
        started = time.perf_counter()
        value = step()
        seconds = time.perf_counter() - started
        total += seconds
        if name.startswith("battles"):
            battles = value
        print(f"  {name:<26} {seconds:7.2f} s")
    print(f"  {'total':<26} {total:7.2f} s")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run SQLite, then PostgreSQL when reachable, then the statistics."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--actions", type=int, default=400, help="timed key presses per database")
    parser.add_argument("--judgments", type=int, default=100_000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_database("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}", args)
    if not args.no_postgres:
        try:
            url, drop = create_postgres_database()
        except pytest.skip.Exception as exc:  # no server: the helper "skips"
            print(f"PostgreSQL: skipped ({exc})")
        else:
            try:
                run_database("PostgreSQL", url, args)
            finally:
                drop()
    statistics(args.judgments, args.boot)


if __name__ == "__main__":
    main()
