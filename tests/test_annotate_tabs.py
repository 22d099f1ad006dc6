"""The Annotate and Approve tab handlers called as Gradio calls them, with a gr.Request naming the user:
roles are checked on the server, a stale save keeps what was typed, model text is rendered inert."""

from __future__ import annotations

import gradio as gr
import pytest
from PIL import Image
from sqlalchemy import select

from annotation.queue import assign_annotators
from app.tabs.annotate import EDITOR_OUTPUTS, AnnotateHandlers
from app.tabs.approve import ApproveHandlers
from db.errors import PermissionDenied
from db.schema import Annotation, Case, Label
from db.users import actor, create_user, find_user
from tests.review_app import load_demo
from tests.web_helpers import PASSWORD, make_services

USERS = {"t-admin": ("admin",), "t-ann": ("annotator",), "t-ann2": ("annotator",), "t-chief": ("approver",),
         "t-rev": ("reviewer",)}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("annotate-tabs") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in USERS.items():
            create_user(session, name, password=PASSWORD, roles=roles)
        cases = session.scalars(select(Case.id).order_by(Case.key)).all()
        assign_annotators(session, actor(session, "t-admin"), cases[:4],
                          [find_user(session, "t-ann").id, find_user(session, "t-ann2").id], per_case=1)
        # Both annotators on case 5 would be an agreement study; here one shared lane is tested.
    yield services, AnnotateHandlers(services), ApproveHandlers(services)
    services.close()


def _req(username: str) -> gr.Request:
    return gr.Request(username=username)


def _open(handlers, username: str, case_id: int | None = None):
    dropdown = handlers.populate(_req(username))[0]
    case_id = case_id or dropdown.value
    return case_id, handlers.open_case(case_id, _req(username))


def test_the_editor_opens_prefilled_and_a_submit_stores_a_version(app):
    services, annotate, _ = app
    case_id, shown = _open(annotate, "t-ann")
    assert len(shown) == EDITOR_OUTPUTS
    ids, value, phase = shown[0], shown[1], shown[2]
    assert ids["base_id"] is None and ids["source"].startswith("model:") and ids["prediction_id"]
    assert value["boxes"] and Image.open(value["image"]).size == (854, 480)  # the stored file, in Gradio's cache
    assert [choice[1] for choice in phase.choices] == ["A", "B", "C", "D"]
    value["boxes"] = [{"xmin": 200, "ymin": 150, "xmax": 420, "ymax": 330, "label": "Go Zone"}]
    after = annotate.save(True, ids, value, "C", "<b>loc</b>", "ok", "clip", "CBD", request=_req("t-ann"))
    assert after[0]["base_id"] is not None and "awaiting approval" in after[8]
    with services.db.session_scope() as session:
        saved = session.get(Annotation, after[0]["base_id"])
        assert (saved.status, saved.phase, saved.box, saved.location) == (
            "submitted", "C", (200.0, 150.0, 420.0, 330.0), "<b>loc</b>")
    assert "&lt;b&gt;loc&lt;/b&gt;" in after[9]
    assert "<b>loc</b>" not in after[9]


def test_a_stale_save_keeps_the_editor_and_shows_the_other_version(app):
    services, annotate, _ = app
    with services.db.session_scope() as session:
        case_id = session.scalar(select(Case.id).order_by(Case.key).offset(10).limit(1))  # unassigned case
    _, mine = _open(annotate, "t-ann", case_id)
    _, theirs = _open(annotate, "t-ann2", case_id)
    annotate.save(False, theirs[0], theirs[1], "B", "their words", "", "", "", request=_req("t-ann2"))
    stale = annotate.save(False, mine[0], mine[1], "A", "my careful words", "", "", "", request=_req("t-ann"))
    assert stale[1:-1] == [gr.skip()] * (EDITOR_OUTPUTS - 2)  # the editor's content is left as typed
    assert "t-ann2 saved version 1" in stale[-1].value and "their words" in stale[-1].value
    assert stale[0]["base_id"] is not None and stale[0]["base_id"] != mine[0]["base_id"]
    on_top = annotate.save(False, stale[0], mine[1], "A", "my careful words", "", "", "", request=_req("t-ann"))
    with services.db.session_scope() as session:
        saved = session.get(Annotation, on_top[0]["base_id"])
        assert (saved.version, saved.location) == (2, "my careful words")


def test_roles_are_checked_in_every_handler(app):
    services, annotate, approve = app
    with pytest.raises(PermissionDenied):
        annotate.open_case(1, _req("t-rev"))
    with pytest.raises(PermissionDenied):
        annotate.save(True, {"case_id": 1, "base_id": None}, None, "A", "", "", "", "", request=_req("t-rev"))
    with pytest.raises(PermissionDenied):
        approve.show(1, _req("t-ann"))
    with pytest.raises(PermissionDenied):
        approve.decide(True, 1, "", _req("t-ann"))
    with pytest.raises(PermissionDenied):
        annotate.assign("demo", ["t-ann"], 1, _req("t-ann"))
    assert annotate.populate(_req("t-rev")) == [gr.skip()] * 3


def test_approval_through_the_handlers_changes_the_reference(app):
    services, annotate, approve = app
    dropdown = approve.populate(_req("t-chief"))
    assert dropdown.choices, "the submitted version of the first test awaits review"
    annotation_id = dropdown.choices[0][1]
    details, image, _ = approve.show(annotation_id, _req("t-chief"))
    assert "box IoU" in details and image.size == (854, 480)
    assert "<b>loc</b>" not in details and "&lt;b&gt;loc&lt;/b&gt;" in details
    approve.decide(True, annotation_id, "fine", _req("t-chief"))
    with services.db.session_scope() as session:
        label = session.scalar(select(Label).join(Annotation, Annotation.case_id == Label.case_id)
                               .where(Annotation.id == annotation_id, Label.is_current))
        assert label.source == f"annotation:{annotation_id}" and label.phase == "C"
