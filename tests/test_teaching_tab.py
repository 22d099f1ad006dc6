"""The Teach tab handlers called as Gradio calls them (the functions wired into the Blocks, with a gr.Request
naming the user): roles are checked on the server, and what each handler RETURNS to a resident before they
submit holds nothing of the expert answer, the teaching notes or any model output."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import pandas as pd
import pytest
from PIL import Image, ImageChops
from sqlalchemy import select

from app import main
from app import teach_render as view
from app.tabs import teach
from db.schema import Case, Label
from db.users import actor, create_user
from models.boxes import Box
from review.teaching import collections as col
from review.teaching.material import ModelOutput, case_material
from review.teaching.presentation import Place, present
from tests.review_app import DEMO_MODELS, load_demo
from tests.web_helpers import PASSWORD, make_services

USERS = {"t-edu": ("educator",), "t-edu2": ("educator",), "t-res1": ("resident",), "t-res2": ("resident",),
         "t-rev": ("reviewer",)}
CASE = "demo/demo_vid01/000500"
NOTES = "Ask them where the cystic plate is first"
POINT = "The Go Zone never includes the liver bed"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("teach-tab") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in USERS.items():
            create_user(session, name, password=PASSWORD, roles=roles)
        educator = actor(session, "t-edu")
        collection = col.create_collection(session, educator, "Tab quiz", shared=True,
                                           presenter="demo-surg-r1")
        case = session.scalar(select(Case).where(Case.key == CASE))
        col.add_to_collection(session, educator, collection.id, case.id, notes=NOTES, teaching_point=POINT)
        col.add_to_collection(session, educator, collection.id,
                              session.scalar(select(Case.id).where(Case.key == "demo/demo_vid02/000000")))
        ids = (collection.id, case.id)
    blocks = main.build_blocks(services)
    handlers = {fn.fn.__qualname__: fn.fn for fn in blocks.fns.values() if fn.fn is not None}
    assert "TeachHandlers.collect" in handlers  # the one-click add is wired on the Compare tab
    yield services, handlers, blocks, ids
    services.close()


def _request(username: str) -> gr.Request:
    return gr.Request(username=username)


def payload_text(value: Any) -> str:
    """Everything a handler's return value would put on the wire, as searchable text."""
    if isinstance(value, (list, tuple)):
        return " ".join(payload_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k} {payload_text(v)}" for k, v in value.items())
    if isinstance(value, Image.Image):
        return "<image>"
    if isinstance(value, pd.DataFrame):
        return value.to_csv()
    if isinstance(value, gr.components.Component) or hasattr(value, "to_plotly_json"):
        data = value.to_plotly_json() if hasattr(value, "to_plotly_json") else vars(value)
        return json.dumps(data, default=str)
    return str(value)


def _secrets(services, case_id: int) -> dict[str, list[str]]:
    """What a resident must not receive before submitting: the expert's rationale and box, the notes and
    teaching point, and every model's name, reasoning and rationale."""
    with services.db.session_scope() as session:
        material = case_material(session, case_id, "gozone")
    expert = material.expert
    return {
        "rationale": list(expert.rationale.values()),
        "box": [view._box_text(expert.box)],
        "notes": [NOTES, POINT],
        "model": [*DEMO_MODELS, *(text for o in material.outputs for text in o.levels.values()),
                  *(text for o in material.outputs for text in o.rationale.values())],
    }


def _leaks(text: str, secrets: dict[str, list[str]]) -> list[str]:
    return [f"{kind}: {value[:40]!r}" for kind, values in secrets.items() for value in values
            if value and value in text]


def _raw_frame(services, case_id: int) -> Image.Image:
    with services.db.session_scope() as session:
        return services.frames.open_image(session.get(Case, case_id).frame).convert("RGB")


def test_the_quiz_question_reaches_the_resident_without_the_answer_and_the_feedback_after(app):
    services, handlers, _, (collection_id, case_id) = app
    secrets = _secrets(services, case_id)
    shown = handlers["TeachHandlers.quiz_start"](_request("t-res1"), collection_id)
    state, question, canvas, phase, *_ = shown
    assert state == {"collection_id": collection_id, "position": 1, "case_id": case_id}
    text = payload_text(shown)
    assert "Tab quiz" in text and "Dissection of Calot" in text  # the question and its phase choices ...
    assert not _leaks(text, secrets), _leaks(text, secrets)       # ... and nothing of the answer
    assert canvas["boxes"] == [] and not ImageChops.difference(canvas["image"], _raw_frame(services,
                                                                                           case_id)).getbbox()
    for step in ("quiz_next", "quiz_previous"):
        moved = handlers[f"TeachHandlers.{step}"](_request("t-res1"), state)
        assert not _leaks(payload_text(moved), secrets)
    # A secret search that can fail: the same search finds everything in the reply to the submitted attempt.
    canvas = {"image": canvas["image"], "boxes": [{"xmin": 300, "ymin": 150, "xmax": 500, "ymax": 330,
                                                   "label": "Go Zone", "color": (245, 158, 11)}]}
    feedback, image = handlers["TeachHandlers.quiz_submit"](_request("t-res1"), state, canvas, "B", "clip",
                                                            "CBD")
    found = _leaks(payload_text([feedback, image]), secrets)
    assert {line.split(":")[0] for line in found} == {"rationale", "box", "notes",
                                                      "model"}  # notes: the point
    assert any("demo-surg-r1" in line for line in found) and POINT in feedback and NOTES not in feedback
    assert "Your result" in feedback and "IoU" in feedback and image.visible


def test_a_resident_is_refused_the_educator_handlers_and_an_educator_the_quiz(app):
    services, handlers, _, (collection_id, case_id) = app
    educator_only = {"start": (collection_id, ""), "step": ({"collection_id": collection_id, "position": 1,
                                                             "step": 0}, "next_step"),
                     "create_collection": ("Mine",), "open_collection": (collection_id,),
                     "add_by_key": (collection_id, CASE), "save_notes": (collection_id, case_id, "x", "y"),
                     "list_cases": ("demo", "(any)", "(any)", "(any)", "(any)"), "collect": (collection_id,
                                                                                             case_id)}
    for name, args in educator_only.items():
        with pytest.raises(gr.Error, match="needs the educator role"):
            handlers[f"TeachHandlers.{name}"](_request("t-res1"), *args)
    with pytest.raises(gr.Error, match="needs the resident role"):
        handlers["TeachHandlers.quiz_start"](_request("t-edu"), collection_id)
    with pytest.raises(gr.Error, match="needs the resident role"):
        handlers["TeachHandlers.quiz_submit"](_request("t-edu"), {"collection_id": collection_id,
                                                                  "position": 1,
                                                                  "case_id": case_id}, None, "B", "", "")
    for name, args in {"quiz_start": (collection_id,), "results": ("(all)", 0), "start": (collection_id,
                                                                                          "")}.items():
        with pytest.raises(gr.Error, match="needs the"):
            handlers[f"TeachHandlers.{name}"](_request("t-rev"), *args)
    assert all(u == gr.skip() for u in handlers["TeachHandlers.populate"](_request("t-rev")))
    # The resident's page load names no private collection and fills no educator list.
    updates = handlers["TeachHandlers.populate"](_request("t-res1"))
    assert "Tab quiz" in payload_text(updates[6]) and updates[4] == gr.skip() and updates[7] == gr.skip()


def test_a_resident_sees_only_their_own_results_and_attempts(app):
    services, handlers, _, (collection_id, case_id) = app
    state = {"collection_id": collection_id, "position": 1, "case_id": case_id}
    canvas = {"image": None, "boxes": [{"xmin": 10, "ymin": 10, "xmax": 90, "ymax": 90}]}
    handlers["TeachHandlers.quiz_submit"](_request("t-res2"), state, canvas, "A", "", "")
    *_, attempts, choices = handlers["TeachHandlers.results"](_request("t-res1"), "(all)", 0)
    assert set(attempts["resident"]) <= {"t-res1"}
    with pytest.raises(gr.Error, match="your own"):
        handlers["TeachHandlers.results"](_request("t-res1"), "t-res2", 0)
    *_, everyone, all_choices = handlers["TeachHandlers.results"](_request("t-edu"), "(all)", 0)
    theirs = int(everyone[everyone["resident"] == "t-res2"]["attempt"].iloc[0])
    with pytest.raises(gr.Error, match="no such attempt"):
        handlers["TeachHandlers.open_attempt"](_request("t-res1"), theirs)
    feedback, _ = handlers["TeachHandlers.open_attempt"](_request("t-edu"), theirs)
    assert "Expert reference" in feedback
    time_figure, cases_figure, confusion_figure, per_resident, *_ = handlers["TeachHandlers.results"](
        _request("t-edu"), "(all)", 0)
    assert time_figure.data and cases_figure.data and confusion_figure.data
    assert "t-res2" in set(per_resident["resident"])


def test_the_presentation_reveals_one_step_per_press(app):
    services, handlers, _, (collection_id, case_id) = app
    with services.db.session_scope() as session:
        slide = present(session, actor(session, "t-edu"), collection_id, Place(1, 0))
    levels = slide.presented.levels
    state, header, image, body, notes = handlers["TeachHandlers.start"](_request("t-edu"), collection_id, "")
    assert "step 1 of 8" in header and NOTES in notes
    assert not any(text in body for text in levels.values()) and "Expert reference" not in body
    assert not ImageChops.difference(image, _raw_frame(services, case_id)).getbbox()  # nothing drawn yet
    seen = []
    for _ in range(7):
        state, header, image, body, _ = handlers["TeachHandlers.step"](_request("t-edu"), state, "next_step")
        seen.append((view.esc(levels[1]) in body, view.esc(levels[2]) in body, "Expert reference" in body,
                     "Other models" in body, view.esc(POINT) in body))
        if "Answer (demo-surg-r1)" in body and len(seen) == 4:
            assert ImageChops.difference(image, _raw_frame(services, case_id)).getbbox()  # its box is drawn
    assert seen[0] == (True, False, False, False, False) and seen[1][:2] == (True, True)
    assert seen[4][2] and not seen[4][3] and seen[5][3] and seen[6][4]
    state, header, *_ = handlers["TeachHandlers.step"](_request("t-edu"), state, "next_step")
    assert state["position"] == 2 and "case 2 of 2" in header and "step 1 of" in header
    state, header, *_ = handlers["TeachHandlers.step"](_request("t-edu"), state, "prev_step")
    assert state["position"] == 1 and "step 8 of 8" in header


def test_collections_are_built_through_the_handlers_and_the_one_click_add(app):
    services, handlers, _, (collection_id, case_id) = app
    select_update, _, *view_ = handlers["TeachHandlers.create_collection"](_request("t-edu2"), "Second set")
    new_id = select_update.value
    assert view_[0] == "Second set" and "created" in view_[-1]
    cases = handlers["TeachHandlers.list_cases"](_request("t-edu2"), "demo", "(any)", "B", "(any)", "(any)")
    assert len(cases.choices) == 4
    shown = handlers["TeachHandlers.add_selected"](_request("t-edu2"), new_id, [cases.choices[0][1]])
    assert len(shown[4]) == 1
    shown = handlers["TeachHandlers.add_matching"](_request("t-edu2"), new_id, "demo", "(any)", "B", "(any)",
                                                   "(any)")
    assert list(shown[4]["#"]) == [1, 2, 3, 4] and "3 of 4" in shown[-1]
    with services.db.session_scope() as session:
        other = session.scalar(select(Case).join(Label, Label.case_id == Case.id).where(Label.phase == "D"))
        other_id, other_key = other.id, other.key
    assert "case 5" in handlers["TeachHandlers.collect"](_request("t-edu2"), new_id, other_id)
    with pytest.raises(gr.Error, match="already in"):
        handlers["TeachHandlers.collect"](_request("t-edu2"), new_id, other_id)
    with pytest.raises(gr.Error, match="Only the educator who made"):
        handlers["TeachHandlers.collect"](_request("t-edu2"), collection_id, other_id)
    moved = handlers["TeachHandlers.move_up"](_request("t-edu2"), new_id, other_id)
    assert moved[4]["case"].iloc[3] == other_key and "place 4" in moved[-1]


def test_the_key_script_drives_buttons_that_exist(app):
    *_, blocks, _ = app
    elem_ids = {block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)}
    for target in ("next-step", "prev-step", "next-case", "prev-case", "first-step", "last-step",
                   "fullscreen"):
        assert f"'{target}'" in teach.PRESENT_KEYS_JS and f"teach-{target}" in elem_ids
    assert "teach-stage" in elem_ids and "teach-quiz-canvas" in elem_ids


def test_model_text_is_rendered_inert_in_slides_and_feedback():
    hostile = "<script>window.x=1</script><img src=x onerror=alert(1)>"
    output = ModelOutput("<b>m</b>", "javascript:red", {1: hostile}, None, hostile, "B", "Dissection",
                         (Box(1, 2, 30, 40),), {"location": hostile})
    html = view.answer_html(output) + view._contrast_html([output])
    assert "<script" not in html and "<img" not in html and "<b>m" not in html
    assert "&lt;script&gt;" in html and "javascript:" not in html  # an odd colour becomes the grey fallback
