"""Leaderboards from the database, on SQLite and PostgreSQL: the demo pack's Go Zone and phase boards agree
with scoring each prediction one by one (models.compare.score); crafted runs check which run counts (newest
finished, or the one asked for), the case filter, triplet / action / CVS references, predictions parsed in
memory, and the Arena Score as the mean of each model's primary metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import select

import annotation.demo
from annotation.demo.load import load_demo_pack
from db.cases import CaseFilter
from db.errors import DomainError, NotFound
from db.schema import Case, CaseTag, Frame, Label, Model, Prediction, Run
from models.compare import case_reference, score
from models.parsing import TURN_SEPARATOR, ParsedOutput
from models.vocabularies import vocabulary_for
from review.metrics.leaderboard import arena, breakdown, confusion, dashboard, leaderboard

_ids = count(1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return annotation.demo.write_demo_pack(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def demo(session, store, pack, monkeypatch):
    monkeypatch.setattr(annotation.demo, "write_demo_pack", lambda folder: pack)
    load_demo_pack(session, store, pack.folder)
    return session


def _by_hand(session, task: str, split: str | None = None) -> dict[str, dict[str, list]]:
    """Per model: the IoU and phase-correct of each prediction, scored one at a time as Compare does."""
    found: dict[str, dict[str, list]] = {}
    query = (
        select(Prediction, Run, Model, Case)
        .join(Run, Prediction.run_id == Run.id)
        .join(Model, Run.model_id == Model.id)
        .join(Case, Prediction.case_id == Case.id)
        .where(Run.task == task)
    )
    for prediction, run, model, case in session.execute(query):
        if split is not None and case.split != split:
            continue
        reference = case_reference(session, case, vocabulary_for(task, case.dataset, case.procedure))
        if reference is None:
            continue
        box_iou, phase_correct = score(ParsedOutput.from_json(prediction.parsed), task, reference)
        entry = found.setdefault(model.name, {"iou": [], "phase": []})
        entry["iou"].append(box_iou)
        entry["phase"].append(bool(phase_correct))
    return found


def _value(board, model: str, metric: str, **groups) -> float:
    rows = board.metrics[(board.metrics["model"] == model) & (board.metrics["metric"] == metric)]
    for column, value in groups.items():
        rows = rows[rows[column] == value]
    (value,) = rows["value"].tolist()
    return value


def test_demo_go_zone_board_matches_scoring_each_prediction(demo):
    board = leaderboard(demo, "gozone", CaseFilter(dataset="demo"), n_boot=100)
    expected = _by_hand(demo, "gozone")
    assert set(board.runs["model"]) == set(expected) == {"demo-surg-r1", "demo-surgo-r1", "demo-baseline"}
    for model, scores in expected.items():
        ious, phases = scores["iou"], scores["phase"]
        assert _value(board, model, "miou") == pytest.approx(sum(ious) / len(ious))
        assert _value(board, model, "acc25") == pytest.approx(sum(i >= 0.25 for i in ious) / len(ious))
        assert _value(board, model, "phase_acc") == pytest.approx(sum(phases) / len(phases))
        hard = [i if p else 0.0 for i, p in zip(ious, phases, strict=True)]
        assert _value(board, model, "h_miou") == pytest.approx(sum(hard) / len(hard))
    table = board.table()
    assert table["h_acc25"].is_monotonic_decreasing and list(table["n"]) == [16, 16, 16]
    assert (table["miou_lo"] <= table["miou"]).all() and (table["miou"] <= table["miou_hi"]).all()


def test_demo_phase_board_over_a_split_and_its_breakdowns(demo):
    board = leaderboard(demo, "phase", CaseFilter(split="test"), n_boot=50)
    expected = _by_hand(demo, "phase", split="test")
    for model, scores in expected.items():
        assert _value(board, model, "accuracy") == pytest.approx(sum(scores["phase"]) / len(scores["phase"]))
    assert set(board.table()["n"]) == {8}
    per_phase = breakdown(board, "ref", n_boot=0)
    assert set(per_phase["ref"]) <= set("ABCD") and per_phase["n"].sum() == 8 * 3 * 4  # 4 metrics per group
    counts = confusion(board)
    assert counts.groupby("model")["count"].sum().to_dict() == {m: 8 for m in expected}
    view = dashboard(demo, "gozone", CaseFilter(), n_boot=20)
    assert view.class_column == "ref_phase" and not view.per_dataset.empty and not view.confusion.empty
    assert set(view.per_dataset["dataset"]) == {"demo"}


# --- crafted rows ------------------------------------------------------------------------------------------


def _case(session, dataset: str = "bench", split: str = "test", tags: tuple[str, ...] = (), **label) -> Case:
    n = next(_ids)
    frame = Frame(sha256=f"{n:064x}", width=100, height=100, format="PNG", size_bytes=10, path=f"x/{n}.png")
    case = Case(
        key=f"{dataset}/v/{n}",
        frame=frame,
        dataset=dataset,
        procedure="laparoscopic_cholecystectomy",
        video="v",
        frame_index=n,
        split=split,
        tags=[CaseTag(tag=t) for t in tags],
    )
    session.add(case)
    session.flush()
    session.add(Label(case_id=case.id, source="test", is_current=True, content_sha256="0" * 64, **label))
    session.flush()
    return case


def _run(
    session,
    model: str,
    task: str,
    *,
    status: str = "done",
    finished: datetime | None = T0,
    version: str = "v1",
) -> Run:
    found = session.scalar(select(Model).where(Model.name == model))
    if found is None:
        found = Model(name=model, backend="replay", box_convention="pixels")
        session.add(found)
        session.flush()
    run = Run(
        model_id=found.id,
        task=task,
        prompt_version=version,
        params_sha256=f"{next(_ids):064x}",
        status=status,
        finished_at=finished,
        created_at=T0,
    )
    session.add(run)
    session.flush()
    return run


def _predict(
    session, run: Run, case: Case, *, raw: str | None = None, error: str | None = None, **parsed
) -> None:
    output = ParsedOutput(**parsed) if parsed else None
    session.add(
        Prediction(
            run_id=run.id,
            case_id=case.id,
            raw_text=raw,
            error=error,
            parsed=output.to_json() if output else None,
            phase=output.phase if output else None,
            answer=None,
        )
    )
    session.flush()


def test_the_newest_finished_run_counts_unless_a_run_is_chosen(session):
    cases = [_case(session, dataset="cholec80", phase="Preparation") for _ in range(2)]
    old = _run(session, "m", "phase", finished=T0)
    new = _run(session, "m", "phase", status="imported", finished=T0 + timedelta(days=1))
    running = _run(session, "m", "phase", status="running", finished=None, version="v2")
    for case in cases:
        _predict(session, old, case, phase="Preparation")
        _predict(session, new, case, phase="CalotTriangleDissection")
        _predict(session, running, case, phase="Preparation")
    only = CaseFilter(keys=tuple(c.key for c in cases))
    board = leaderboard(session, "phase", only, n_boot=0)
    assert board.runs["run"].tolist() == [new.id] and _value(board, "m", "accuracy") == 0.0
    chosen = leaderboard(session, "phase", only, run_ids=[old.id], n_boot=0)
    assert chosen.runs["run"].tolist() == [old.id] and _value(chosen, "m", "accuracy") == 1.0
    with pytest.raises(NotFound):
        leaderboard(session, "phase", only, run_ids=[10**9], n_boot=0)
    with pytest.raises(DomainError, match="not gozone"):
        leaderboard(session, "gozone", only, run_ids=[old.id], n_boot=0)


def test_case_filter_failed_predictions_and_text_parsed_in_memory(session):
    tagged = [_case(session, tags=("night",), phase="A", box=(0.0, 0.0, 50.0, 50.0)) for _ in range(3)]
    other = _case(session, phase="A", box=(0.0, 0.0, 50.0, 50.0))
    run = _run(session, "g", "gozone")
    _predict(session, run, tagged[0], phase="A", boxes=[])
    _predict(session, run, tagged[1], error="timeout")
    # Imported text not parsed yet: read here (pixels convention) without writing to the database.
    _predict(
        session,
        run,
        tagged[2],
        raw=f'<answer>A</answer>\n{TURN_SEPARATOR}\n<answer>[{{"bbox_2d": [0, 0, 50, 25]}}]' "</answer>",
    )
    _predict(session, run, other, phase="B", boxes=[])
    board = leaderboard(session, "gozone", CaseFilter(tags=("night",)), n_boot=0)
    assert board.table()["n"].tolist() == [3]
    ious = board.rows.sort_values("case")["iou"].tolist()
    assert ious[:2] == [0.0, 0.0]  # no box, and a failed prediction: IoU 0
    stored = session.scalar(select(Prediction).where(Prediction.case_id == tagged[2].id))
    assert stored.parsed is None
    assert ious[2] == pytest.approx(0.5)
    assert board.rows.sort_values("case")["phase_correct"].tolist() == [1.0, 0.0, 1.0]


def test_triplet_action_and_cvs_boards_from_labels(session):
    g, h = ["grasper", "retract", "gallbladder"], ["hook", "dissect", "cystic_plate"]
    t_cases = [
        _case(session, dataset="cholect50", triplets=[g, h]),
        _case(session, dataset="cholect50", triplets=[g]),
    ]
    a_cases = [
        _case(session, dataset="sar_rarp50", action="Tying a knot"),
        _case(session, dataset="sar_rarp50", action="5"),
    ]  # an index names the action too
    c_cases = [
        _case(session, dataset="endoscapes", cvs={"C1": 1.0, "C2": 0.67, "C3": 1.0}),
        _case(session, dataset="endoscapes", cvs={"C1": 0.0, "C2": 0.33, "C3": 0.0}),
    ]
    triplet_run, action_run, cvs_run = (_run(session, "r1", task) for task in ("triplet", "action", "cvs"))
    _predict(session, triplet_run, t_cases[0], triplets=[tuple(h), tuple(g)])
    _predict(session, triplet_run, t_cases[1], triplets=[("grasper", "grasp", "gallbladder")])
    _predict(session, action_run, a_cases[0], action="Tying a knot")
    _predict(session, action_run, a_cases[1], action="Cutting the suture")
    _predict(session, cvs_run, c_cases[0], cvs={"C1": True, "C2": True, "C3": True, "overall": True})
    _predict(session, cvs_run, c_cases[1], cvs={"C1": False, "C2": True, "C3": False, "overall": False})
    keys = CaseFilter(keys=tuple(c.key for c in (*t_cases, *a_cases, *c_cases)))
    triplets = leaderboard(session, "triplet", keys, n_boot=0)
    assert _value(triplets, "r1", "triplet_acc") == 0.5 and _value(triplets, "r1", "instrument_acc") == 1.0
    actions = leaderboard(session, "action", keys, n_boot=0)
    assert _value(actions, "r1", "accuracy") == 0.5
    cvs = leaderboard(session, "cvs", keys, n_boot=0)
    assert _value(cvs, "r1", "cvs_acc") == 1.0 and _value(cvs, "r1", "c2_acc") == 0.5

    board = arena(session, keys, n_boot=50)
    assert _value(board, "r1", "arena") == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert set(board.metrics["metric"]) == {
        "arena",
        "triplet/cholect50",
        "action/sar_rarp50",
        "cvs/endoscapes",
    }
    row = board.metrics[board.metrics["metric"] == "arena"].iloc[0]
    assert row["n"] == 3 and row["lo"] <= row["value"] <= row["hi"]
    assert leaderboard(session, "arena", keys, n_boot=0).table()["arena"].tolist() == [pytest.approx(2 / 3)]
