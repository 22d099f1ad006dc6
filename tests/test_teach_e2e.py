"""The Teach tab in headless Chromium against the real app (FastAPI + Gradio, in-process under uvicorn, every
response recorded): an educator presents a collection with the keyboard alone, step by step; a resident takes
one quiz question, drawing the Go Zone on the frame, and the expert answer reaches their browser only in the
reply to the stored attempt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app import main
from db.schema import Case, QuizAttempt
from db.users import actor, create_user
from review.teaching import collections as col
from review.teaching.material import case_material
from tests.browser import artifact_path, choose_dropdown, login, require_browser
from tests.review_app import DEMO_MODELS, load_demo
from tests.test_review_ui_blinding import Recorder
from tests.web_helpers import PASSWORD, make_services, running_server

CASES = ("demo/demo_vid01/000500", "demo/demo_vid02/000000")
POINT = "Stay above Rouviere's sulcus"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_browser()
    services = make_services(tmp_path_factory.mktemp("teach-e2e") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in {"e2e-edu": ("educator",), "e2e-res": ("resident",)}.items():
            create_user(session, name, password=PASSWORD, roles=roles)
        educator = actor(session, "e2e-edu")
        collection = col.create_collection(session, educator, "Go Zone rounds", shared=True,
                                           presenter="demo-surg-r1")
        case_ids = [session.scalar(select(Case.id).where(Case.key == key)) for key in CASES]
        for case_id in case_ids:
            col.add_to_collection(session, educator, collection.id, case_id)
        col.set_item_notes(session, educator, collection.id, case_ids[0], notes="ask first",
                           teaching_point=POINT)
        material = case_material(session, case_ids[0], "gozone")
    recorder = Recorder(main.build_app(services))
    with running_server(recorder) as url:
        yield SimpleNamespace(url=url, recorder=recorder, services=services, material=material,
                              collection_id=collection.id, case_ids=case_ids)
    services.close()


def _open_teach(page, site, sub_tab: str) -> None:
    page.goto(f"{site.url}/app/")
    page.get_by_role("tab", name="Teach").click(timeout=30_000)
    page.get_by_role("tab", name=sub_tab).click(timeout=30_000)


def _body(page) -> str:
    return page.locator("#teach-body").inner_text()


def test_an_educator_presents_a_collection_with_the_keyboard(site, page):
    login(page, site, "e2e-edu", PASSWORD)
    _open_teach(page, site, "Present")
    choose_dropdown(page, "teach-present-collection", "Go Zone rounds")
    page.click("#teach-start")
    header = page.locator("#teach-header")
    header.filter(has_text="step 1 of 8").wait_for(timeout=30_000)
    levels = site.material.output("demo-surg-r1").levels
    assert "Question" in _body(page) and levels[1][:40] not in _body(page)
    image = page.locator("#teach-image img")
    image.wait_for(state="visible", timeout=15_000)
    first_src = image.get_attribute("src")

    page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a text box
    expected = [(2, "Level 1"), (3, "Level 2"), (4, "Level 3"), (5, "Answer"), (6, "Expert reference"),
                (7, "Other models"), (8, "Teaching point")]
    for step, title in expected:
        page.keyboard.press("ArrowRight")
        header.filter(has_text=f"step {step} of 8: {title}").wait_for(timeout=15_000)
    body = _body(page)
    assert levels[1][:40] in body and levels[3][:40] in body and POINT in body
    assert "Expert reference" in body and all(m in body for m in DEMO_MODELS)
    assert image.get_attribute("src") != first_src  # the boxes were drawn as they were revealed
    page.screenshot(path=str(artifact_path("teach-present.png")), full_page=True)

    page.keyboard.press("ArrowLeft")
    header.filter(has_text="step 7 of 8").wait_for(timeout=15_000)
    assert POINT not in _body(page)
    page.keyboard.press("PageDown")
    header.filter(has_text="case 2 of 2").wait_for(timeout=15_000)
    assert "step 1 of" in header.inner_text()
    page.keyboard.press("End")
    header.filter(has_text="Other models").wait_for(timeout=15_000)
    page.keyboard.press("PageUp")
    header.filter(has_text="case 1 of 2 (demo/demo_vid01/000500) - step 1 of 8").wait_for(timeout=15_000)


def _secrets(site) -> list[str]:
    material = site.material
    texts = [*material.expert.rationale.values(), POINT, *DEMO_MODELS]
    texts += [text for output in material.outputs for text in (*output.levels.values(),
                                                               *output.rationale.values())]
    return [t for t in texts if t]


def _sent_text(responses) -> str:
    return "".join(r.text() for r in responses if r.package_file() is None)


def test_a_resident_draws_the_go_zone_and_gets_the_expert_answer_only_after_submitting(site, page):
    login(page, site, "e2e-res", PASSWORD)
    site.recorder.responses.clear()
    _open_teach(page, site, "Quiz")
    choose_dropdown(page, "teach-quiz-collection", "Go Zone rounds")
    page.click("#teach-quiz-start")
    page.locator("#teach-quiz-question", has_text="case 1 of 2").wait_for(timeout=30_000)
    canvas = page.locator("#teach-quiz-canvas canvas").first
    canvas.wait_for(state="visible", timeout=30_000)
    page.locator("#teach-quiz-phase label", has_text="B - Dissection").click()

    # Create a box, then drag it out on the frame (from 30 % to 60 % of the canvas in each direction).
    page.get_by_role("button", name="Create box").first.click()
    box = canvas.bounding_box()
    start = (box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    end = (box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)
    page.fill("#teach-quiz-next-action textarea", "clip the cystic duct")
    page.wait_for_timeout(300)

    before = site.recorder.snapshot()
    leaked = [s[:40] for s in _secrets(site) if s in _sent_text(before)]
    assert not leaked, f"sent to the resident before submitting: {leaked}"
    assert "case 1 of 2" in _sent_text(before)  # the capture holds the question's payload

    page.click("#teach-quiz-submit")
    page.locator("#teach-quiz-feedback", has_text="Your result").wait_for(timeout=30_000)
    feedback = page.locator("#teach-quiz-feedback").inner_text()
    assert "Expert reference" in feedback and POINT in feedback
    assert "Model reasoning (demo-surg-r1)" in feedback
    page.locator("#teach-quiz-feedback-image img").wait_for(state="visible", timeout=15_000)
    page.screenshot(path=str(artifact_path("teach-quiz.png")), full_page=True)
    after = _sent_text(site.recorder.snapshot()[len(before):])
    assert any(s in after for s in site.material.expert.rationale.values())  # the search above could fail

    with site.services.db.session_scope() as session:
        [attempt] = session.scalars(select(QuizAttempt).where(QuizAttempt.case_id == site.case_ids[0]))
        x1, y1, x2, y2 = attempt.box
        assert attempt.phase == "B" and attempt.next_action == "clip the cystic duct"
        # The drag covered 30 %-60 % of the shown frame: about 256-512 x 144-288 of the 854x480 original.
        assert abs(x1 - 256) < 40 and abs(x2 - 512) < 40 and abs(y1 - 144) < 30 and abs(y2 - 288) < 30
        assert attempt.iou is not None and attempt.phase_correct == (site.material.expert.phase == "B")
