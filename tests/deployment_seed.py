"""A populated installation for the deployment tests (backup/restore, several writers): the demo pack's
frames, cases, labels and model outputs, users, a running blind study with judgments (a revised one too),
and Go Zone annotation versions; plus a table snapshot that compares two databases of any kind row by row."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, insert, null, select

from annotation.workflow import GoZoneDraft, head, save_version
from db.engine import Database
from db.frames import FrameStore
from db.schema import Base, Case, Label
from db.users import actor, create_user
from review.judging import next_item, submit_judgment
from tests.review_app import create_demo_study, load_demo

PASSWORD = "deployment test password"
REVIEWERS = ("rev1", "rev2", "rev3")
ANNOTATORS = ("ann1", "ann2")


def ratings_for(item, best: str | None) -> dict[str, dict[str, Any]]:
    return {o.letter: {"correct": int(o.letter == best), "levels": {1: "correct", 2: "wrong"},
                       "flags": [] if o.letter == best else ["hallucination"]} for o in item.outputs}


def seed_installation(db: Database, frames: FrameStore, *, judge: bool = True) -> int:
    """Fill an empty, migrated database; returns the study id."""
    load_demo(db, frames)
    with db.session_scope() as session:
        create_user(session, "admin1", password=PASSWORD, roles=["admin"])
        for name in REVIEWERS:
            create_user(session, name, password=PASSWORD, roles=["reviewer"])
        for name in ANNOTATORS:
            create_user(session, name, password=PASSWORD, roles=["annotator"])
    study_id = create_demo_study(db, "admin1", "Deployment study", list(REVIEWERS), k=1, seed=5)
    if judge:
        _judge_and_annotate(db, study_id)
    return study_id


def _judge_and_annotate(db: Database, study_id: int) -> None:
    with db.session_scope() as session:
        reviewer = actor(session, "rev1")
        first = next_item(session, reviewer, study_id).item
        submit_judgment(session, reviewer, first.token, "A", ratings_for(first, "A"), "Calot – ✓ 日本", 1200)
        submit_judgment(session, reviewer, first.token, None, ratings_for(first, None), "revised", 900)
        second = next_item(session, reviewer, study_id).item
        submit_judgment(session, reviewer, second.token, "B", ratings_for(second, "B"), None, None)
        annotator = actor(session, "ann1")
        case = session.scalars(select(Case).order_by(Case.id)).first()
        base = None
        for n in range(3):
            base = save_version(session, annotator, case.id, GoZoneDraft("B", (10.0 + n, 20.0, 200.5, 180.25),
                                                                          location=f"v{n + 1}"),
                                base_id=base, submit=n == 2).id
        assert head(session, case.id).version == 3
        # A JSON column holding SQL NULL next to one holding the JSON document null: both must survive.
        label = session.scalars(select(Label).order_by(Label.id)).first()
        session.execute(insert(Label).values(case_id=label.case_id, source="null-test",
                                             content_sha256="1" * 64, is_current=False, triplets=null(),
                                             cvs=None))


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every table of the models, rows ordered by primary key, datetimes in UTC, and for each nullable JSON
    column whether it is SQL NULL (the app queries ``IS NULL`` on some)."""
    result = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            nullable_json = [c for c in table.columns if isinstance(c.type, JSON) and c.nullable]
            query = select(*table.columns, *(c.is_(None) for c in nullable_json)).order_by(*table.primary_key)
            result[table.name] = [tuple(_utc(v) for v in row) for row in connection.execute(query)]
            assert not any(isinstance(c.type, DateTime) and not c.type.timezone for c in table.columns)
    return result


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value


def frame_files(root: Path) -> dict[str, str]:
    """{path under the store: sha256 of its bytes} of the original frame files (thumbnails left out)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "thumbs" not in p.parts}
