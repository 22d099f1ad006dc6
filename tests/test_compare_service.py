"""The comparison service on real databases: a demo case compared across the three demo models (levels,
canonical boxes, IoU to the reference), uploads as idempotent cases, bad uploads rejected with a reason,
models that are not cached streamed and then served from the cache, and the backend pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import annotation.demo
from annotation.demo.load import load_demo_pack
from annotation.demo.plan import plan_answers
from annotation.importers.uploads import import_uploads
from app.model_catalog import all_specs
from app.settings import Settings
from db.cases import CaseFilter
from db.engine import Database
from db.migrate import upgrade
from db.schema import Case, Prediction
from models import compare_run
from models.backends import BackendError, GenerationResult, ModelSpec
from models.backends.pool import BackendPool
from models.boxes import Box, iou
from models.compare import CompareError, filter_options, matching_cases, prepare_comparison
from models.compare_run import compare_live
from tests.conftest import create_postgres_database, make_image_bytes

CASE = "demo/demo_vid01/000500"
MODELS = ("demo-surgo-r1", "demo-surg-r1", "demo-baseline")


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return annotation.demo.write_demo_pack(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def demo(session, store, pack, monkeypatch, tmp_path):
    """The demo pack loaded into the test's session (its files written once per module)."""
    monkeypatch.setattr(annotation.demo, "write_demo_pack", lambda folder: pack)
    load_demo_pack(session, store, pack.folder)
    specs = all_specs(session, Settings(data_dir=tmp_path))
    return session, store, specs


def _case_id(session, key=CASE) -> int:
    return session.scalar(select(Case.id).where(Case.key == key))


def test_a_demo_case_shows_three_models_with_levels_canonical_boxes_and_iou(demo, pack):
    session, store, specs = demo
    comparison = prepare_comparison(session, store, _case_id(session), [specs[m] for m in MODELS], "gozone")
    assert [v.model for v in comparison.views] == list(MODELS)
    assert [v.status for v in comparison.views] == ["cached"] * 3
    case = next(c for c in pack.cases if c.key == CASE)
    assert comparison.reference.phase == case.phase and comparison.reference.box == pytest.approx(case.box)
    planned = {a.model: a for a in plan_answers(pack.cases) if a.case.key == CASE}
    for view in comparison.views:
        (box,) = view.boxes
        # Each model's own convention (Qwen2.5-VL resized pixels, relative 0-1000) decoded to frame pixels.
        assert box.as_tuple() == pytest.approx(planned[view.model].box.as_tuple(), abs=2.0)
        assert view.iou == pytest.approx(iou(box, comparison.reference.box))
        assert view.phase_correct == (view.parsed.phase == case.phase)
        assert view.color == specs[view.model].color
    surg_r1 = comparison.view("demo-surg-r1")
    assert set(surg_r1.parsed.levels) == {1, 2, 3} and "Level 1" not in surg_r1.parsed.levels[1]
    surgo = comparison.view("demo-surgo-r1")
    assert set(surgo.parsed.rationale) == {"location", "exposure", "next_action", "critical_risk"}
    assert comparison.view("demo-baseline").parsed.warnings  # an answer-only output is flagged
    assert comparison.image.size == (854, 480)


def test_the_phase_task_is_scored_against_the_reference_phase_without_boxes(demo):
    session, store, specs = demo
    comparison = prepare_comparison(session, store, _case_id(session), [specs[m] for m in MODELS], "phase")
    assert all(v.iou is None and v.boxes == [] for v in comparison.views)
    assert {v.phase_correct for v in comparison.views} <= {True, False}
    assert any(v.phase_correct for v in comparison.views)


def test_unknown_case_task_or_no_model_is_a_clear_error(demo):
    session, store, specs = demo
    with pytest.raises(CompareError, match="at least one model"):
        prepare_comparison(session, store, _case_id(session), [], "gozone")
    with pytest.raises(CompareError, match="unknown task"):
        prepare_comparison(session, store, _case_id(session), [specs["demo-baseline"]], "surgery")
    with pytest.raises(CompareError, match="no case"):
        prepare_comparison(session, store, 10**9, [specs["demo-baseline"]], "gozone")


def test_filters_list_the_matching_cases(demo):
    session, _, _ = demo
    options = filter_options(session)
    assert "demo" in options.datasets and options.phases == ["A", "B", "C", "D"]
    assert options.splits == ["test", "train"] and "synthetic" in options.tags
    assert len(matching_cases(session, CaseFilter(dataset="demo"))) == 16
    phase_b = matching_cases(session, CaseFilter(dataset="demo", phase="B", split="train"))
    assert len(phase_b) == 2 and all(key.startswith("demo/demo_vid01/") for _, key in phase_b)


def test_uploads_become_idempotent_cases_and_a_demo_frame_is_served_from_the_cache(demo, pack, tmp_path):
    session, store, specs = demo
    frame = pack.folder / "frames" / "demo_vid01" / "frame_000500.png"
    first = import_uploads(session, store, [("frame_000500.png", frame)])
    again = import_uploads(session, store, [("copy.png", frame)])
    (one,), (two,) = first.cases, again.cases
    assert one.created and not two.created and one.case_id == two.case_id
    assert one.key.startswith("uploads/") and len(one.key) == len("uploads/") + 16
    assert session.scalar(select(func.count()).select_from(Case).where(Case.dataset == "uploads")) == 1
    comparison = prepare_comparison(session, store, one.case_id, [specs[m] for m in MODELS], "gozone")
    assert [v.status for v in comparison.views] == ["cached"] * 3  # replay outputs of the same frame
    assert comparison.reference is None and all(v.iou is None for v in comparison.views)


def test_bad_uploads_are_rejected_with_a_reason_and_the_rest_go_on(session, store, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    whole = make_image_bytes(64, 48)
    corrupt.write_bytes(whole[:len(whole) - 30])  # the end of the pixel data is cut off
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (store.max_bytes + 1))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = tmp_path / "good.png"
    good.write_bytes(make_image_bytes(64, 48, seed=3))
    result = import_uploads(session, store, [(p.name, p) for p in (corrupt, huge, good, text)])
    assert [c.name for c in result.cases] == ["good.png"]
    reasons = dict(result.rejected)
    assert set(reasons) == {"corrupt.png", "huge.png", "notes.png"}
    assert "truncated or corrupt" in reasons["corrupt.png"]
    assert "limit" in reasons["huge.png"] and "not an image" in reasons["notes.png"]
    assert "rejected" in result.render() and "good.png: new case uploads/" in result.render()
    assert len(list(store.root.rglob("*.png"))) == 1  # nothing of the rejected files was stored


# --- running models that are not cached ------------------------------------------------------------------

PHASE_TEXT = ("<think> Level 1: a hook. Level 2: hook dissect fat. Level 3: so the phase is B. </think> "
              "<answer> B </answer>")
TURN_ONE = "<think> Fat in the triangle. </think> <answer> B </answer>"
TURN_TWO = ("<think> Dissect inside the triangle. </think>\nLocation: inside Calot's triangle."
            "\nExposure: adequate.\nNext action: dissect the fat.\nCritical risk: the common bile duct.\n"
            '<answer> [{"bbox_2d": [300, 300, 500, 700], "label": "go zone"}] </answer>')


class StreamingFake:
    """A backend that streams a scripted text word by word (as the OpenAI backend would)."""

    def __init__(self, name: str = "fake-stream", fail: bool = False) -> None:
        self.spec = ModelSpec(name=name, backend="openai", url="http://127.0.0.1:9/v1",
                              box_convention="rel1000", color="#9467bd")
        self.requests, self.fail = [], fail

    def stream(self, request) -> Iterator[str]:
        self.requests.append(request)
        if self.fail:
            raise BackendError("the server went away")
        if request.key[1] == "phase":
            text = PHASE_TEXT
        else:
            text = TURN_ONE if len(request.messages) == 1 else TURN_TWO
        for word in text.split(" "):
            yield word + " "

    def generate(self, requests):
        return [GenerationResult(error="not used", key=r.key) for r in requests]

    def close(self) -> None:
        pass


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path, pack, monkeypatch) -> Iterator[Database]:
    url, drop = ((f"sqlite:///{tmp_path / 'compare.db'}", lambda: None) if request.param == "sqlite"
                 else create_postgres_database())
    database = Database.from_url(url)
    upgrade(database.engine)
    monkeypatch.setattr(annotation.demo, "write_demo_pack", lambda folder: pack)
    monkeypatch.setattr(compare_run, "STREAM_INTERVAL_S", 0.0)
    yield database
    database.dispose()
    drop()


def _loaded(database, store, pack, tmp_path) -> tuple[int, dict]:
    with database.session_scope() as session:
        load_demo_pack(session, store, pack.folder)
        return _case_id(session), all_specs(session, Settings(data_dir=tmp_path))


@pytest.mark.parametrize("task", ["phase", "gozone"])
def test_a_model_not_cached_streams_into_its_view_then_is_cached(database, store, pack, tmp_path, task):
    case_id, specs = _loaded(database, store, pack, tmp_path)
    fake = StreamingFake()
    chosen = [specs["demo-baseline"], fake.spec]
    snapshots = list(compare_live(database, store, lambda spec: fake, case_id, chosen, task))
    assert [s.view("fake-stream").status for s in snapshots[:2]] == ["pending", "loading"]
    assert snapshots[0].view("demo-baseline").status == "cached"  # cached answers come first, at once
    views = [s.view("fake-stream") for s in snapshots]
    streamed = [v.partial for v in views if v.status == "streaming"]
    assert len(streamed) > 5 and all(a != b and b.startswith(a[:10]) for a, b in zip(streamed, streamed[1:]))
    final = snapshots[-1].view("fake-stream")
    assert final.status == "predicted" and final.latency_ms > 0 and final.parsed.phase == "B"
    if task == "gozone":  # turn two carried the definition of the phase turn one chose
        turn_two = fake.requests[1].messages[-1]["content"][-1]["text"]
        assert len(fake.requests) == 2 and "(B) Dissection of Calot's Triangle" in turn_two
        assert final.parsed.rationale["next_action"] == "dissect the fat."
        assert final.boxes == [Box(300 * 854 / 1000, 300 * 480 / 1000, 500 * 854 / 1000, 700 * 480 / 1000)]
        assert final.iou is not None
    else:
        assert set(final.parsed.levels) == {1, 2, 3}
    fake.requests.clear()
    again = list(compare_live(database, store, lambda spec: fake, case_id, [fake.spec], task))
    assert len(again) == 1 and again[0].view("fake-stream").status == "cached" and fake.requests == []


def test_a_failing_or_unloadable_model_shows_its_error_and_the_others_go_on(database, store, pack, tmp_path):
    case_id, specs = _loaded(database, store, pack, tmp_path)
    failing, missing = StreamingFake("fake-fails", fail=True), StreamingFake("fake-missing")

    def get_backend(spec):
        if spec.name == "fake-missing":
            raise BackendError("checkpoint folder /models/x does not exist")
        return failing

    *_, last = compare_live(database, store, get_backend, case_id,
                            [failing.spec, missing.spec, specs["demo-surg-r1"]], "phase")
    assert last.view("fake-fails").status == "error" and "went away" in last.view("fake-fails").error
    assert last.view("fake-missing").status == "error" and "cannot load" in last.view("fake-missing").error
    assert last.view("demo-surg-r1").status == "cached"
    with database.session_scope() as session:  # the backend failure is stored; the load failure is not
        errors = session.scalars(select(Prediction.error).where(Prediction.error.is_not(None))).all()
    assert len(errors) == 1 and "went away" in errors[0]


# --- the backend pool ------------------------------------------------------------------------------------

def test_the_pool_loads_a_model_once_for_concurrent_users_and_reloads_a_changed_spec():
    loads, closed = [], []

    class Slow:
        def __init__(self, spec):
            time.sleep(0.05)
            self.spec = spec
            loads.append(spec.name)

        def close(self):
            closed.append(self.spec.name)

    pool = BackendPool(Slow)
    spec = ModelSpec(name="m", backend="replay", path=Path("/x.jsonl"))
    got = []
    threads = [threading.Thread(target=lambda: got.append(pool.get(spec))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["m"] and len({id(b) for b in got}) == 1
    changed = spec.model_copy(update={"color": "#000000"})
    assert pool.get(changed) is not got[0] and loads == ["m", "m"] and closed == ["m"]
    pool.close()
    assert closed == ["m", "m"] and pool.loaded() == []
