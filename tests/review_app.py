"""Shared by the Review and Studies tab tests: the demo pack drawn once per test process, loaded into a
database, and a blind study over it created through the real service."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path
from unittest import mock

from sqlalchemy.orm import Session

import annotation.demo as demo_pack
from annotation.demo.load import load_demo_pack
from db.cases import CaseFilter
from db.engine import Database
from db.frames import FrameStore
from db.users import actor
from review.studies import create_study

DEMO_MODELS = ("demo-surg-r1", "demo-surgo-r1", "demo-baseline")


@cache
def demo_files() -> demo_pack.DemoPackFiles:
    """The demo pack written once (drawing its frames is most of the cost of loading it)."""
    folder = Path(tempfile.mkdtemp(prefix="surgreview-demo-pack-"))
    atexit.register(shutil.rmtree, folder, True)
    return demo_pack.write_demo_pack(folder / "pack")


def load_demo_into(session: Session, frames: FrameStore) -> None:
    """Import the demo pack (frames, reference labels, the three demo models' outputs) in ``session``."""
    files = demo_files()
    with mock.patch.object(demo_pack, "write_demo_pack", lambda folder: files):
        load_demo_pack(session, frames, files.folder)


def load_demo(database: Database, frames: FrameStore) -> None:
    with database.session_scope() as session:
        load_demo_into(session, frames)


def create_demo_study(database: Database, admin: str, name: str, reviewers: list[str], *, k: int = 1,
                      reveal_policy: str = "never", seed: int = 11, task: str = "gozone") -> int:
    """A running study of the three demo models over every demo case; returns its id."""
    with database.session_scope() as session:
        setup = create_study(session, actor(session, admin), name=name, task=task, model_names=DEMO_MODELS,
                             case_filter=CaseFilter(dataset="demo"), reviewers=reviewers, k=k,
                             reveal_policy=reveal_policy, seed=seed)
        return setup.study.id
