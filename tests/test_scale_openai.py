"""Predicting over a thousand cases through an OpenAI-compatible server (the path a vLLM deployment takes):
concurrency stays within its bound and reaches it, progress is reported, and a run cut off half-way resumes
with only the missing cases (nothing asked twice, nothing stored twice)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import func, select

from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from db.schema import Case, Prediction
from models.backends import ModelSpec
from models.backends.openai_backend import OpenAIBackend
from models.runner import run_predictions
from tests.fake_openai_server import Behaviour, running_fake_server

CASES = 1000
CONCURRENCY = 16


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A SQLite database with CASES distinct tiny frames (distinct, so no prediction is a cache hit)."""
    from annotation.importers import CaseMeta
    from annotation.importers.frames import import_frames

    folder = tmp_path_factory.mktemp("scale")
    frames = folder / "in"
    frames.mkdir()
    for n in range(CASES):
        out = io.BytesIO()
        Image.new("RGB", (32, 24), (n % 256, (n // 256) * 40, 7)).save(out, "PNG")
        (frames / f"frame_{n:06d}.png").write_bytes(out.getvalue())
    database = Database.from_url(f"sqlite:///{folder / 'scale.db'}")
    upgrade(database.engine)
    store = FrameStore(folder / "store")
    with database.session_scope() as session:
        summary = import_frames(session, store, [frames], CaseMeta("scale", video="v1"))
        assert len(summary.imported) == CASES
        ids = session.scalars(select(Case.id).order_by(Case.id)).all()
    yield database, store, ids
    database.dispose()


def test_a_thousand_cases_with_bounded_concurrency_progress_and_resume(workspace):
    database, store, ids = workspace
    reply = '<think>Level 1: grasper.</think><answer>Calot Triangle Dissection</answer>'
    # 50 ms per reply: long enough that all 16 workers are in flight at once even when a loaded machine is
    # slow to prepare requests (at 10 ms a CI run once peaked at 15), and the thousand still take ~3 s.
    with running_fake_server(Behaviour(reply=reply, latency_s=0.05)) as server:
        spec = ModelSpec(name="vllm-scale", backend="openai", url=server.url, remote_model="fake-model",
                         concurrency=CONCURRENCY, max_retries=1, timeout_s=10)
        backend = OpenAIBackend(spec, backoff_base_s=0.01, backoff_cap_s=0.05)
        seen = []

        def stop_half_way(progress) -> None:  # noqa: ANN001
            seen.append(progress.predicted)
            if progress.predicted >= CASES // 2:
                raise Interrupted  # the process dies here: what was committed stays

        with pytest.raises(Interrupted):
            run_predictions(database, store, backend, "phase", ids, on_progress=stop_half_way)
        first = len(server.completions)
        assert seen == sorted(seen) and seen[-1] >= CASES // 2
        assert server.max_in_flight == CONCURRENCY  # the bound is reached and never passed

        reports = []
        done = run_predictions(database, store, backend, "phase", ids, on_progress=reports.append)
        backend.close()
        assert done.cached == first and done.predicted == CASES - first and done.failed == 0
        assert len(server.completions) == CASES  # every case asked exactly once over both runs
        assert server.max_in_flight == CONCURRENCY
        assert reports[0].cached == first and reports[-1].predicted == CASES - first
    with database.session_scope() as session:
        stored = session.scalar(select(func.count(func.distinct(Prediction.case_id))))
        total = session.scalar(select(func.count()).select_from(Prediction))
        phases = set(session.scalars(select(Prediction.phase)))
    assert stored == total == CASES and phases == {"B"}  # ResGo, the default of the procedure
