"""The prediction runner on real databases with the tiny transformers model: batches, cache, resume,
per-case failures, and the two-turn phase-then-go flow."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from annotation.importers import CaseMeta, import_frames
from db.engine import Database
from db.migrate import upgrade
from db.schema import AuditEvent, Case, Prediction, Run
from models.backends import GenerationResult, ModelSpec, create_backend
from models.prompts import TURN_SEPARATOR
from models.runner import run_predictions
from tests.conftest import create_postgres_database, make_image_bytes
from tests.scripted import ScriptedBackend
from tests.tiny_models import build_tiny_qwen

PHASE_OUTPUT = ("<think> This is a Level 3 task requiring contextual reasoning. Level 1: a clipper is on the cystic "
                "duct. Level 2: the clipper clips the cystic duct. Level 3: clips are applied, so the phase is "
                "Clip and Divide. </think> <answer> C </answer>")
TURN_ONE = "<think> Clips sit on the duct. </think> <answer> C </answer>"
TURN_TWO = ("<think> The duct is skeletonized. </think>\nLocation: the cystic duct segment below the infundibulum."
            "\nExposure: adequate.\nNext action: divide between clips.\nCritical risk: common bile duct injury."
            '\n<answer> [{"bbox_2d": [280, 119, 560, 357], "label": "go zone"}] </answer>')


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    path = build_tiny_qwen(tmp_path_factory.mktemp("tiny") / "q25", "qwen2.5-vl")
    backend = create_backend(ModelSpec(name="tiny-surg-r1", backend="transformers", path=path, family="qwen2.5-vl",
                                       box_convention="qwen25_pixels", generation={"max_new_tokens": 8}))
    yield backend
    backend.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'runner.db'}", lambda: None
    else:
        url, drop = create_postgres_database()
    database = Database.from_url(url)
    upgrade(database.engine)
    yield database
    database.dispose()
    drop()


def _cases(database, store, tmp_path, n=5, dataset="resgo", size=(854, 480)) -> list[int]:
    folder = tmp_path / dataset / "video01"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"frame_{i * 125:06d}.png").write_bytes(make_image_bytes(*size, seed=i))
    with database.session_scope() as session:
        import_frames(session, store, [tmp_path / dataset], CaseMeta(dataset))
        return list(session.scalars(select(Case.id).where(Case.dataset == dataset).order_by(Case.id)))


def _predictions(database, task="phase"):
    with database.session_scope() as session:
        return session.scalars(select(Prediction).join(Run).where(Run.task == task)
                               .order_by(Prediction.case_id)).all()


def test_a_run_stores_parsed_predictions_and_a_rerun_is_served_from_the_cache(database, store, tmp_path,
                                                                              tiny_backend):
    ids = _cases(database, store, tmp_path)
    backend = ScriptedBackend(tiny_backend, lambda request: PHASE_OUTPUT)
    progress = run_predictions(database, store, backend, "phase", ids, batch_size=2)
    assert (progress.predicted, progress.cached, progress.failed) == (5, 0, 0)
    assert [len(call) for call in backend.calls] == [2, 2, 1]
    predictions = _predictions(database)
    assert [p.phase for p in predictions] == ["C"] * 5
    assert all(p.raw_text.strip() == PHASE_OUTPUT and p.completion_tokens > 10 and p.latency_ms > 0
               for p in predictions)
    assert predictions[0].parsed["levels"]["3"].startswith("clips are applied") or predictions[0].parsed["levels"]
    with database.session_scope() as session:
        run = session.scalars(select(Run)).one()
        assert (run.status, run.prompt_version, run.task) == ("done", "phase-3level-v1", "phase")
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "predict.run")).one()
        assert audit.payload["predicted"] == 5 and audit.entity_id == str(run.id)

    backend.calls.clear()
    again = run_predictions(database, store, backend, "phase", ids, batch_size=2)
    assert (again.cached, again.predicted, backend.calls) == (5, 0, [])


def test_the_same_frame_in_another_case_is_a_cache_hit(database, store, tmp_path, tiny_backend):
    first = _cases(database, store, tmp_path, n=2, dataset="resgo")
    other = _cases(database, store, tmp_path, n=2, dataset="cholec80")  # same pixels, other dataset
    backend = ScriptedBackend(tiny_backend, lambda request: PHASE_OUTPUT)
    run_predictions(database, store, backend, "localization", first)
    backend.calls.clear()
    progress = run_predictions(database, store, backend, "localization", other)
    assert (progress.cached, backend.calls) == (2, [])


def test_a_failing_case_is_recorded_and_the_run_goes_on_and_resumes(database, store, tmp_path, tiny_backend):
    ids = _cases(database, store, tmp_path, n=3)
    with database.session_scope() as session:
        broken = session.get(Case, ids[1])
        store.path(broken.frame).unlink()  # the frame file went missing on disk
        broken_key = broken.key
    backend = ScriptedBackend(tiny_backend, lambda request: PHASE_OUTPUT)
    progress = run_predictions(database, store, backend, "phase", ids, batch_size=3)
    assert (progress.predicted, progress.failed) == (2, 1)
    assert progress.errors[0][0] == broken_key and "cannot read the frame" in progress.errors[0][1]
    with database.session_scope() as session:
        assert session.scalars(select(Run.status)).one() == "failed"
    # Resume after the file is back: only the failed case is predicted again.
    folder = tmp_path / "resgo" / "video01"
    with database.session_scope() as session:
        store.path(session.get(Case, ids[1]).frame).write_bytes((folder / "frame_000125.png").read_bytes())
    backend.calls.clear()
    resumed = run_predictions(database, store, backend, "phase", ids)
    assert (resumed.cached, resumed.predicted, sum(len(c) for c in backend.calls)) == (2, 1, 1)


def test_backend_errors_are_stored_on_the_prediction(database, store, tmp_path):
    ids = _cases(database, store, tmp_path, n=2)

    class Down:
        spec = ModelSpec(name="down", backend="openai", url="http://127.0.0.1:9/v1")

        def generate(self, requests):
            return [GenerationResult(error="connection refused", key=r.key) for r in requests]

    progress = run_predictions(database, store, Down(), "phase", ids)
    assert progress.failed == 2
    assert [p.error for p in _predictions(database)] == ["connection refused"] * 2


def test_phase_then_go_inserts_the_chosen_phase_definition_in_turn_two(database, store, tmp_path, tiny_backend):
    ids = _cases(database, store, tmp_path, n=2)

    def script(request):
        return TURN_ONE if len(request.messages) == 1 else TURN_TWO

    backend = ScriptedBackend(tiny_backend, script)
    run_predictions(database, store, backend, "gozone", ids, batch_size=2)
    first, second = backend.calls
    assert len(first) == len(second) == 2
    turn_two_text = second[0].messages[-1]["content"][-1]["text"]
    assert "(C) Clip and Divide" in turn_two_text and "skeletonized segment" in turn_two_text
    assert second[0].messages[1]["content"][0]["text"].strip() == TURN_ONE
    prediction = _predictions(database, "gozone")[0]
    assert TURN_SEPARATOR in prediction.raw_text and prediction.phase == "C"
    parsed = prediction.parsed
    assert parsed["rationale"]["next_action"] == "divide between clips."
    # Qwen2.5-VL pixels of the 840x476 input, decoded to the 854x480 original.
    x1, y1, x2, y2 = parsed["boxes"][0]["box"]
    assert (x1, y1, x2, y2) == pytest.approx((280 * 854 / 840, 119 * 480 / 476, 560 * 854 / 840, 357 * 480 / 476))


def test_a_replay_model_serves_its_recorded_output_for_the_same_frame_anywhere(database, store, tmp_path):
    """An upload of a frame a replay model has an output for shows that output, not 'no recorded output'."""
    import json

    from annotation.importers.predictions import import_predictions
    from models.runner import parse_pending

    ids = _cases(database, store, tmp_path, n=1, dataset="resgo")
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_text(json.dumps({"case": "resgo/video01/000000", "model": "elsewhere", "task": "phase",
                                    "raw": PHASE_OUTPUT, "prompt_version": "theirs-v3"}) + "\n")
    with database.session_scope() as session:
        import_predictions(session, recorded)
        parse_pending(session)
    upload = _cases(database, store, tmp_path, n=1, dataset="uploads")  # the same pixels, another case
    backend = create_backend(ModelSpec(name="elsewhere", backend="replay", path=recorded))
    progress = run_predictions(database, store, backend, "phase", upload)
    assert (progress.cached, progress.failed) == (1, 0)
    with database.session_scope() as session:
        served = session.scalars(select(Prediction).where(Prediction.case_id == upload[0])).one()
        assert (served.phase, served.raw_text) == ("C", PHASE_OUTPUT)
    assert ids != upload
