"""Label Studio sync against a real Label Studio server (tests/labelstudio_server.py) on real SQLite and
PostgreSQL, over the demo pack: push, pull, the command line, the server fixture itself. The pure payload
tests are in tests/test_labelstudio_payloads.py."""

from __future__ import annotations

import base64
import uuid
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import select

import annotation.demo as demo_pack
from annotation import workflow
from annotation.demo.load import load_demo_pack
from annotation.labelstudio.client import LabelStudioError, connect, project_tasks
from annotation.labelstudio.payloads import choice_value
from annotation.labelstudio.pull import pull
from annotation.labelstudio.push import prediction_draft, push
from annotation.workflow import GoZoneDraft
from db.cases import CaseFilter
from db.schema import Annotation, Case, Model, Prediction, Run
from db.users import actor_of, create_user
from models.boxes import labelstudio_to_canonical
from models.vocabularies import load
from tests.labelstudio_server import labelstudio_server  # noqa: F401 - the session fixture
from tests.test_labelstudio_payloads import phase_choice, rect_region

RESGO = load("resgo")
W, H = 854, 480
MODEL = "demo-surg-r1"


# --- against a real Label Studio server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return demo_pack.write_demo_pack(tmp_path_factory.mktemp("demo") / "pack")


@pytest.fixture(scope="module")
def ls_rater(labelstudio_server):  # noqa: F811
    """A Label Studio annotator whose email's local part is a SurgReview username."""
    client = connect(*labelstudio_server)
    for user in client.users.list():
        if user.email == "rater1@hospital.test":
            return user.id
    return client.users.create(
        username="rater1", email="rater1@hospital.test", password="rater1-secret-pw"
    ).id


@pytest.fixture
def demo(session, store, demo_files, monkeypatch, labelstudio_server):  # noqa: F811
    monkeypatch.setattr(demo_pack, "write_demo_pack", lambda folder: demo_files)
    load_demo_pack(session, store, demo_files.folder)
    people = {
        name: actor_of(create_user(session, name, roles=roles))
        for name, roles in [("annie", ["annotator"]), ("rater1", ["annotator"]), ("ada", ["admin"])]
    }
    return SimpleNamespace(
        session=session,
        store=store,
        client=connect(*labelstudio_server),
        title=f"gozone {uuid.uuid4().hex[:10]}",
        **people,
    )


VID01 = CaseFilter(dataset="demo", video="demo_vid01")


def _tasks(demo, project_id) -> dict:
    return {t.data["case_key"]: t for t in project_tasks(demo.client, project_id)}


def _newest_prediction(session, case_id) -> Prediction:
    return session.scalars(
        select(Prediction)
        .join(Run)
        .join(Model)
        .where(Model.name == MODEL, Run.task == "gozone", Prediction.case_id == case_id)
        .order_by(Run.id.desc())
    ).first()


def test_push_sends_cases_with_the_models_go_zone(demo):
    result = push(demo.session, demo.store, demo.client, project=demo.title, case_filter=VID01, model=MODEL)
    cases = {c.key: c for c in demo.session.scalars(select(Case).where(Case.video == "demo_vid01"))}
    assert sorted(result.summary.imported) == sorted(cases) and len(cases) == 8
    assert result.summary.rejected == [] and result.summary.duplicates == []
    tasks = _tasks(demo, result.project_id)
    assert set(tasks) == set(cases)
    for key, task in tasks.items():
        case = cases[key]
        assert task.data["case_id"] == case.id
        assert base64.b64decode(task.data["image"].split(",", 1)[1]) == demo.store.read(case.frame)
        (prediction,) = task.predictions
        assert prediction.model_version == MODEL
        expected = prediction_draft(_newest_prediction(demo.session, case.id))
        box = next(r for r in prediction.result if r["from_name"] == "gozone")
        value = box["value"]
        pixels = labelstudio_to_canonical(
            value["x"],
            value["y"],
            value["width"],
            value["height"],
            box["original_width"],
            box["original_height"],
        )
        assert (box["original_width"], box["original_height"]) == (W, H)
        assert pixels == pytest.approx(expected.box, abs=1e-9)
        phase = next(r for r in prediction.result if r["from_name"] == "phase")["value"]["choices"]
        assert phase == [choice_value(RESGO.phase(expected.phase))]
        texts = {r["from_name"]: r["value"]["text"][0] for r in prediction.result if r["type"] == "textarea"}
        assert texts == {k: v for k, v in expected.texts().items() if v}


def test_pushing_again_adds_no_task_and_adds_a_missing_model(demo):
    first = push(demo.session, demo.store, demo.client, project=demo.title, case_filter=VID01)
    assert len(first.summary.imported) == 8
    assert all(not t.predictions for t in _tasks(demo, first.project_id).values())
    again = push(demo.session, demo.store, demo.client, project=demo.title, case_filter=VID01, model=MODEL)
    assert again.project_id == first.project_id
    assert again.summary.imported == [] and len(again.summary.duplicates) == 8
    tasks = _tasks(demo, first.project_id)
    assert len(tasks) == 8
    assert all([p.model_version for p in t.predictions] == [MODEL] for t in tasks.values())
    third = push(
        demo.session,
        demo.store,
        demo.client,
        project=str(first.project_id),
        case_filter=CaseFilter(dataset="demo"),
        model=MODEL,
    )
    assert len(third.summary.imported) == 8 and len(third.summary.duplicates) == 8
    tasks = _tasks(demo, first.project_id)
    assert len(tasks) == 16 and all(len(t.predictions) == 1 for t in tasks.values())


def _annotate(demo, task, *, box, phase, texts=None, completed_by=None) -> int:
    result = [rect_region(*box), phase_choice(phase)] if box is not None else [phase_choice(phase)]
    result += [
        {"from_name": name, "to_name": "image", "type": "textarea", "value": {"text": [text]}}
        for name, text in (texts or {}).items()
    ]
    extra = {"completed_by": completed_by} if completed_by is not None else {}
    return demo.client.annotations.create(id=task.id, result=result, **extra).id


def test_pull_stores_new_versions_with_the_right_parent_and_author(demo, ls_rater):
    pushed = push(demo.session, demo.store, demo.client, project=demo.title, case_filter=VID01, model=MODEL)
    tasks = _tasks(demo, pushed.project_id)
    keys = sorted(tasks)[:3]
    case_ids = {key: demo.session.scalar(select(Case.id).where(Case.key == key)) for key in keys}
    # The first case already has a version in SurgReview: the pulled one must go on top of it.
    earlier = workflow.save_version(
        demo.session,
        demo.annie,
        case_ids[keys[0]],
        GoZoneDraft("A", (10.0, 10.0, 100.0, 100.0)),
        base_id=None,
    )
    texts = {
        "location": "medial to the <b>gallbladder</b>",
        "exposure": "fat cleared",
        "next_action": "clip the duct",
        "critical_risk": "common bile duct",
    }
    made = {
        keys[0]: _annotate(
            demo, tasks[keys[0]], box=(12.5, 20.0, 25.0, 30.0), phase="C - Clip and Divide", texts=texts
        ),
        keys[1]: _annotate(
            demo,
            tasks[keys[1]],
            box=(50.0, 40.0, 10.0, 10.0),
            phase="D - Gallbladder Dissection",
            completed_by=ls_rater,
        ),
        keys[2]: _annotate(
            demo, tasks[keys[2]], box=(0.0, 0.0, 100.0, 100.0), phase="A - Preparation of the Go Zone"
        ),
    }
    result = pull(demo.session, demo.client, project=demo.title, as_user="annie")
    assert result.summary.rejected == [] and result.summary.warnings == []
    assert sorted(result.summary.imported) == sorted(
        f"labelstudio:{pushed.project_id}/{tasks[k].id}/{made[k]}" for k in keys
    )

    first = workflow.head(demo.session, case_ids[keys[0]])
    assert (first.version, first.parent_id, first.author_id) == (2, earlier.id, demo.annie.user_id)
    assert first.source == f"labelstudio:{pushed.project_id}/{tasks[keys[0]].id}/{made[keys[0]]}"
    assert first.box == pytest.approx(labelstudio_to_canonical(12.5, 20.0, 25.0, 30.0, W, H), abs=1e-9)
    assert (first.phase, first.status) == ("C", "submitted")
    # The approver compares with the proposal the annotator saw in Label Studio.
    assert first.source_prediction_id == _newest_prediction(demo.session, case_ids[keys[0]]).id
    assert {name: getattr(first, name) for name in texts} == texts
    second = workflow.head(demo.session, case_ids[keys[1]])
    assert (second.version, second.parent_id, second.author_id) == (1, None, demo.rater1.user_id)
    assert second.box == pytest.approx((0.5 * W, 0.4 * H, 0.6 * W, 0.5 * H), abs=1e-9)
    assert second.phase == "D" and second.location is None
    third = workflow.head(demo.session, case_ids[keys[2]])
    assert third.box == pytest.approx((0.0, 0.0, W, H)) and third.phase == "A"

    again = pull(demo.session, demo.client, project=str(pushed.project_id), as_user="annie")
    assert again.summary.imported == [] and sorted(again.summary.duplicates) == sorted(
        result.summary.imported
    )
    assert workflow.version_count(demo.session, case_ids[keys[0]]) == 2

    # A second annotation of a case already pulled becomes the next version, on top of the pulled one.
    newer = _annotate(demo, tasks[keys[0]], box=(13.0, 20.0, 25.0, 30.0), phase="C - Clip and Divide")
    third_pull = pull(demo.session, demo.client, project=demo.title, as_user="annie")
    assert third_pull.summary.imported == [f"labelstudio:{pushed.project_id}/{tasks[keys[0]].id}/{newer}"]
    top = workflow.head(demo.session, case_ids[keys[0]])
    assert (top.version, top.parent_id) == (3, first.id)


def test_malformed_annotations_are_reported_and_the_others_stored(demo):
    pushed = push(demo.session, demo.store, demo.client, project=demo.title, case_filter=VID01)
    tasks = _tasks(demo, pushed.project_id)
    keys = sorted(tasks)
    good = _annotate(
        demo, tasks[keys[0]], box=(10.0, 10.0, 30.0, 30.0), phase="B - Dissection of Calot's Triangle"
    )
    nan_box = _annotate(demo, tasks[keys[1]], box=("NaN", 10.0, 30.0, 30.0), phase="B")
    no_box = _annotate(demo, tasks[keys[2]], box=None, phase="B")
    bad_phase = _annotate(demo, tasks[keys[3]], box=(10.0, 10.0, 30.0, 30.0), phase="E - Closure")
    outside = _annotate(demo, tasks[keys[4]], box=(90.0, 90.0, 30.0, 30.0), phase="A")
    result = pull(demo.session, demo.client, project=demo.title, as_user="annie")
    source = {k: f"labelstudio:{pushed.project_id}/{tasks[k].id}/" for k in keys}
    reasons = dict(result.summary.rejected)
    assert set(reasons) == {
        source[keys[1]] + str(nan_box),
        source[keys[2]] + str(no_box),
        source[keys[3]] + str(bad_phase),
    }
    assert "finite" in reasons[source[keys[1]] + str(nan_box)]
    assert "no Go Zone box" in reasons[source[keys[2]] + str(no_box)]
    assert "'E - Closure' is not in" in reasons[source[keys[3]] + str(bad_phase)]
    assert sorted(result.summary.imported) == sorted(
        [source[keys[0]] + str(good), source[keys[4]] + str(outside)]
    )
    assert [s for s, _ in result.summary.warnings] == [source[keys[4]] + str(outside)]
    clipped = demo.session.scalar(
        select(Annotation).where(Annotation.source == source[keys[4]] + str(outside))
    )
    assert clipped.box == pytest.approx((0.9 * W, 0.9 * H, W, H))
    assert clipped.source_prediction_id is None  # pushed without a model
    for key in keys[1:4]:
        case_id = demo.session.scalar(select(Case.id).where(Case.key == key))
        assert workflow.head(demo.session, case_id) is None


def test_an_unmatched_annotator_needs_as_user(demo):
    pushed = push(
        demo.session,
        demo.store,
        demo.client,
        project=demo.title,
        case_filter=CaseFilter(dataset="demo", video="demo_vid02", limit=1),
    )
    (task,) = _tasks(demo, pushed.project_id).values()
    made = _annotate(demo, task, box=(10.0, 10.0, 30.0, 30.0), phase="A")
    result = pull(demo.session, demo.client, project=demo.title)
    ((source, reason),) = result.summary.rejected
    assert source == f"labelstudio:{pushed.project_id}/{task.id}/{made}"
    assert "admin@surgreview.test" in reason and "--as-user" in reason
    with pytest.raises(LabelStudioError, match="nobody"):
        pull(demo.session, demo.client, project=demo.title, as_user="nobody")
    assert pull(demo.session, demo.client, project=demo.title, as_user="ada").summary.imported == [source]


def test_a_wrong_token_and_an_unknown_project_are_clear_errors(demo, labelstudio_server):  # noqa: F811
    with pytest.raises(LabelStudioError, match="refused the API token"):
        connect(labelstudio_server.url, "0" * 40)
    with pytest.raises(LabelStudioError, match="Cannot reach"):
        connect("http://127.0.0.1:9", "x" * 40)
    with pytest.raises(Exception, match="no project"):
        pull(demo.session, demo.client, project=f"missing {uuid.uuid4().hex}", as_user="annie")


# --- the command line ----------------------------------------------------------------------------------


def test_cli_push_then_pull(tmp_path, monkeypatch, labelstudio_server, ls_rater):  # noqa: F811
    from typer.testing import CliRunner

    from app.cli import cli
    from app.cli_labelstudio import labelstudio_cli
    from db.engine import Database

    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    monkeypatch.setenv("SURGREVIEW_LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("SURGREVIEW_LABEL_STUDIO_TOKEN", labelstudio_server.token)
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", "load"]).exit_code == 0
    title = f"cli {uuid.uuid4().hex[:10]}"
    args = ["push", "--project", title, "--dataset", "demo", "--video", "demo_vid02"]
    args += ["--model", "demo-surgo-r1"]
    pushed = runner.invoke(labelstudio_cli, args)
    assert pushed.exit_code == 0, pushed.output
    assert "Label Studio push: 8 imported, 0 skipped as duplicate, 0 rejected" in pushed.output
    again = runner.invoke(labelstudio_cli, args)
    assert "0 imported, 8 skipped as duplicate" in again.output

    client = connect(*labelstudio_server)
    project_id = int(pushed.output.split()[1])
    task = next(iter(project_tasks(client, project_id)))
    # rater1 has no SurgReview account here (the demo's Label Studio admin would match the demo's "admin").
    result = [rect_region(20.0, 30.0, 10.0, 10.0), phase_choice("B")]
    client.annotations.create(id=task.id, result=result, completed_by=ls_rater)
    refused = runner.invoke(labelstudio_cli, ["pull", "--project", title])
    assert refused.exit_code == 3 and "--as-user" in refused.output
    pulled = runner.invoke(labelstudio_cli, ["pull", "--project", title, "--as-user", "annotator1"])
    assert pulled.exit_code == 0, pulled.output
    assert "Label Studio pull: 1 imported" in pulled.output
    database = Database.from_url(f"sqlite:///{tmp_path / 'data' / 'surgreview.db'}")
    with database.session_scope() as session:
        (stored,) = session.scalars(select(Annotation)).all()
        assert stored.phase == "B" and stored.box == pytest.approx((0.2 * W, 0.3 * H, 0.3 * W, 0.4 * H))
    database.dispose()
    wrong = runner.invoke(labelstudio_cli, ["pull", "--project", title, "--token", "0" * 40])
    assert wrong.exit_code == 1 and "refused the API token" in wrong.output


# --- the server fixture itself -------------------------------------------------------------------------


def test_a_stopped_server_leaves_no_process_behind(tmp_path, labelstudio_server):  # noqa: F811
    import os

    from tests import labelstudio_server as fixture

    with fixture.label_studio(tmp_path) as server:
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        assert server.url != labelstudio_server.url
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=5)


def test_a_failed_install_is_a_skip_without_ci_and_a_failure_with_it(tmp_path, monkeypatch):
    import subprocess

    from tests import labelstudio_server as fixture

    def refuse(*args, **kwargs):
        raise subprocess.CalledProcessError(1, args[0])

    monkeypatch.setattr(fixture.subprocess, "run", refuse)
    with pytest.raises(fixture.LabelStudioUnavailable, match="installing label-studio==1.23.2 failed"):
        fixture.venv_python(tmp_path)
    assert not (tmp_path / "venv" / ".surgreview-complete").exists()
    monkeypatch.setattr(fixture, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="no network"):
        fixture.unavailable("no network")
    monkeypatch.setattr(fixture, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="with CI=true the Label Studio tests must run"):
        fixture.unavailable("no network")
