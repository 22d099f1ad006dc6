"""What the separate OS processes of tests/test_multiprocess.py run. Kept apart from the test module so that a
spawned process imports only the database and service layers (the test module pulls in the web app)."""

from __future__ import annotations

import json
import random
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import select

from annotation.workflow import EditConflict, GoZoneDraft, head, save_version
from db.engine import Database
from db.migrate import upgrade
from db.schema import Case, ReviewItem, User
from db.users import actor
from review.judging import get_item, submit_judgment

ROUNDS = 4  # each writer judges every item and edits every case this many times
EDITED_CASES = 3
ANNOTATORS = ("ann1", "ann2")


def migrate(url: str, barrier: Any) -> None:
    """Upgrade the database at ``url`` once every process is ready, so they all start together."""
    database = Database.from_url(url)
    barrier.wait(60)
    upgrade(database.engine)
    database.dispose()


def writer(url: str, number: int, barrier: Any, out: str) -> None:
    """Judge every item of every reviewer and edit the shared cases, ROUNDS times, each action in its own
    transaction as a web request would; write what was acknowledged (committed) and refused to ``out``."""
    rng = random.Random(number)
    database = Database.from_url(url)
    log: dict[str, Any] = {"judgments": [], "annotations": [], "refused": [], "messages": []}
    try:
        with database.session_scope() as session:
            items = [(r.reviewer_id, r.token)
                     for r in session.scalars(select(ReviewItem).order_by(ReviewItem.id))]
            names = {user.id: user.username for user in session.scalars(select(User))}
            cases = session.scalars(select(Case.id).order_by(Case.id).limit(EDITED_CASES)).all()
            # Both writers make their first save on the same base: exactly one of them can win each case.
            first_bases = {case: head(session, case).id for case in cases}
        barrier.wait(60)
        for round_ in range(ROUNDS):
            for case in rng.sample(cases, len(cases)):
                base = first_bases.pop(case) if round_ == 0 else _head_id(database, case)
                _save(database, log, ANNOTATORS[number % 2], case, base, f"w{number}r{round_}")
            for reviewer_id, token in rng.sample(items, len(items)):
                _judge(database, log, names[reviewer_id], token, f"w{number}r{round_}", rng)
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        log["crash"] = traceback.format_exc()
    finally:
        database.dispose()
        Path(out).write_text(json.dumps(log))


def _head_id(database: Database, case_id: int) -> int | None:
    with database.session_scope() as session:  # the editor is opened in one request ...
        current = head(session, case_id)
        return current.id if current else None


def _save(database: Database, log: dict, annotator: str, case_id: int, base: int | None, tag: str) -> None:
    draft = GoZoneDraft("B", (10.0, 20.0, 300.0, 240.0), location=tag)
    try:
        with database.session_scope() as session:  # ... and saved in a later one
            saved = save_version(session, actor(session, annotator), case_id, draft, base_id=base)
            row = [saved.id, case_id, saved.version, saved.parent_id, tag]
    except Exception as exc:  # noqa: BLE001 - every refusal is counted by kind; the test asserts on them
        _refused(log, exc)
        return
    log["annotations"].append(row)  # committed: acknowledged to the user


def _judge(database: Database, log: dict, reviewer: str, token: str, tag: str, rng: random.Random) -> None:
    try:
        with database.session_scope() as session:
            who = actor(session, reviewer)
            item = get_item(session, who, token)
            best = rng.choice([o.letter for o in item.outputs])
            ratings = {o.letter: {"correct": int(o.letter == best), "levels": {1: "correct"}}
                       for o in item.outputs}
            judgment = submit_judgment(session, who, token, best, ratings, f"{tag}:{token}")
            row = [judgment.id, judgment.item_id, judgment.revision, judgment.comment]
    except Exception as exc:  # noqa: BLE001
        _refused(log, exc)
        return
    log["judgments"].append(row)


def _refused(log: dict, exc: Exception) -> None:
    log["refused"].append(type(exc).__name__)
    if not isinstance(exc, EditConflict):
        log["messages"].append(str(exc).splitlines()[0][:300])
