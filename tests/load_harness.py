"""The app and its site for load and fault tests: shared by tests/test_load.py, tests/test_faults.py,
tests/test_faults_outages.py and bench/load.py; the simulated users that drive it are tests/load_users.py.

The app runs as ``python -m app serve`` in a subprocess on SQLite or PostgreSQL (``start_server``); the site
(users, the demo pack plus synthetic cases with the demo models' outputs, a study, annotator assignments) is
written into its database before it starts (``seed_site``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from tests.browser import ROOT, free_port

PASSWORD = "load-test-password"
ADMIN = "load-admin"
DEMO_MODELS = ("demo-surg-r1", "demo-surgo-r1", "demo-baseline")


def reviewer_names(n: int) -> list[str]:
    return [f"load-rev{i:03d}" for i in range(1, n + 1)]


def annotator_names(n: int) -> list[str]:
    return [f"load-ann{i:03d}" for i in range(1, n + 1)]


# --- the server ------------------------------------------------------------------------------------------


@dataclass
class AppProcess:
    """A running ``python -m app serve`` on 127.0.0.1."""

    data_dir: Path
    database_url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-tail:]

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the server."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def server_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app process (or a ``surgreview`` command) on ``data_dir`` and ``database_url``."""
    return {**os.environ, "SURGREVIEW_DATA_DIR": str(data_dir), "SURGREVIEW_DATABASE_URL": database_url,
            "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **extra}


def start_server(data_dir: Path, database_url: str = "", *, port: int | None = None,
                 timeout_s: float = 120.0, log_name: str = "server.log",
                 env: dict[str, str] | None = None) -> AppProcess:
    """Start the app on ``data_dir`` (SQLite there when ``database_url`` is empty), with ``env`` added to
    its environment, and wait for /healthz."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir / log_name
    with log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=ROOT,
                                   env=server_env(data_dir, database_url, **(env or {})),
                                   stdout=log, stderr=subprocess.STDOUT)
    server = AppProcess(data_dir, database_url, port, process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the app did not answer within {timeout_s:.0f} s:\n{server.log()}")


# --- the site ---------------------------------------------------------------------------------------------


@dataclass
class Site:
    """What ``seed_site`` made: the study, who reviews and annotates, and the data folder's database."""

    data_dir: Path
    database_url: str
    study_id: int
    reviewers: list[str]
    annotators: list[str]
    cases: int
    items: int


def synthetic_frames(folder: Path, n: int, seed: int = 7) -> Path:
    """``n`` distinct small 854x480 JPEG frames (smooth colour fields) as ``loadNN/frame_NNNNNN.jpg``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480:8, 0:854:8]
    for i in range(n):
        a, b, c = rng.uniform(0.2, 1.0, 3)
        red = 120 + 100 * np.sin(xx / (90 * a) + i)
        green = 60 + 50 * np.cos(yy / (70 * b))
        blue = 40 + 30 * np.sin((xx + yy) / (120 * c))
        small = np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8)
        image = Image.fromarray(small).resize((854, 480), Image.BILINEAR)
        path = folder / f"load{i // 100:02d}" / f"frame_{i % 100:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG", quality=80)
    return folder


def replayed_predictions(demo_predictions: Path, case_keys: Iterable[str], out: Path, seed: int = 3) -> Path:
    """A predictions JSONL giving every case in ``case_keys`` the Go Zone output of each demo model on a
    demo case drawn at random (same model, prompt version and parameters: the same runs)."""
    records = [json.loads(line) for line in demo_predictions.read_text(encoding="utf-8").splitlines() if line]
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["task"] == "gozone":
            by_model[record["model"]].append(record)
    rng = random.Random(seed)
    with out.open("w", encoding="utf-8") as handle:
        for key in case_keys:
            for model in DEMO_MODELS:
                handle.write(json.dumps({**rng.choice(by_model[model]), "case": key}) + "\n")
    return out


def seed_site(data_dir: Path, database_url: str = "", *, reviewers: int, annotators: int, extra_cases: int,
              k: int = 3, cases_per_annotator: int = 4) -> Site:
    """Migrate the database, create the users (one password), load the demo pack, import ``extra_cases``
    synthetic frames with replayed demo-model outputs, create a study of the three demo models over every
    case (``k`` reviewers each) and give each annotator ``cases_per_annotator`` cases."""
    from sqlalchemy import func, select

    from annotation.importers import CaseMeta
    from annotation.importers.frames import import_frames
    from annotation.importers.predictions import import_predictions
    from annotation.queue import assign_annotators
    from app.services import Services
    from app.settings import Settings
    from db.cases import CaseFilter, find_case_ids
    from db.schema import Case, ReviewItem
    from db.users import actor, create_user
    from models.runner import parse_pending
    from review.studies import create_study
    from tests.review_app import demo_files, load_demo_into

    services = Services.from_settings(Settings(data_dir=data_dir, database_url=database_url))
    rev, ann = reviewer_names(reviewers), annotator_names(annotators)
    try:
        with services.db.session_scope() as session:
            create_user(session, ADMIN, password=PASSWORD, roles=("admin",))
            ids = {}
            for name in rev:
                create_user(session, name, password=PASSWORD, roles=("reviewer",))
            for name in ann:
                ids[name] = create_user(session, name, password=PASSWORD, roles=("annotator",))
            session.flush()
            annotator_ids = [ids[name].id for name in ann]
        with services.db.session_scope() as session:
            load_demo_into(session, services.frames)
        if extra_cases:
            folder = synthetic_frames(data_dir / "load-frames", extra_cases)
            with services.db.session_scope() as session:
                import_frames(session, services.frames, [folder], CaseMeta("load"))
                keys = session.scalars(select(Case.key).where(Case.dataset == "load")).all()
            jsonl = replayed_predictions(demo_files().predictions, keys, data_dir / "load-predictions.jsonl")
            with services.db.session_scope() as session:
                import_predictions(session, jsonl)
                parse_pending(session)
        with services.db.session_scope() as session:
            admin = actor(session, ADMIN)
            setup = create_study(session, admin, name="Load study", task="gozone", model_names=DEMO_MODELS,
                                 case_filter=CaseFilter(), reviewers=rev, k=min(k, len(rev)), seed=5)
            study_id = setup.study.id
            case_ids = list(find_case_ids(session, CaseFilter(dataset="load" if extra_cases else "demo")))
            wanted = case_ids[:cases_per_annotator * len(ann)]
            if ann:
                assign_annotators(session, admin, wanted, annotator_ids, per_case=1, seed=1)
            items = session.scalar(select(func.count()).select_from(ReviewItem)
                                   .where(ReviewItem.study_id == study_id))
            cases = len(setup.assigned)
    finally:
        services.close()
    return Site(data_dir, database_url, study_id, rev, ann, cases, items)
