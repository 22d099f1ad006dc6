"""Go Zone correction in headless Chromium against the real app (``surgreview serve --demo``): an annotator
drags the pre-filled box, picks the phase with a key, writes the next action and submits with Ctrl+Enter;
the chief surgeon approves it in the Approve tab; the case's reference label is now the corrected box."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from annotation.editor import open_editor
from annotation.queue import assign_annotators
from app.settings import Settings
from db.engine import Database
from db.schema import Annotation, Case, Label
from db.users import actor, find_user
from tests.browser import artifact_path, login, require_browser, start_app

USERS = {"e2e-admin": ("admin",), "e2e-ann": ("annotator",), "e2e-chief": ("approver",)}
DRAG_PX = 80  # on screen


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    server = start_app(tmp_path_factory.mktemp("annotate-e2e"), USERS)
    server.db = Database.from_url(Settings(data_dir=server.data_dir).database_url)
    with server.db.session_scope() as session:
        cases = session.scalars(select(Case.id).order_by(Case.key)).all()[:2]
        assign_annotators(session, actor(session, "e2e-admin"), cases, [find_user(session, "e2e-ann").id])
        server.case_id = cases[0]
        proposal = open_editor(session, actor(session, "e2e-ann"), cases[0])
        server.proposal_box = proposal.draft.box
    yield server
    server.db.dispose()
    server.stop()


def test_an_annotator_corrects_a_prefilled_box_and_the_approver_makes_it_the_reference(server, page):
    login(page, server, "e2e-ann")  # lands on the Annotate tab with the first case of the queue open
    page.locator("#annotate-status", has_text="you start from model:").wait_for(timeout=30_000)
    canvas = page.locator("#annotate-editor canvas")
    canvas.wait_for(timeout=15_000)
    frame = canvas.bounding_box()
    scale = frame["width"] / 854
    x1, y1, x2, y2 = server.proposal_box
    start = (frame["x"] + (x1 + x2) / 2 * scale, frame["y"] + (y1 + y2) / 2 * scale)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + DRAG_PX, start[1], steps=8)
    page.mouse.up()
    page.keyboard.press("Digit3")  # phase C
    page.locator("#annotate-phase input[value=C]").wait_for(state="attached")
    assert page.locator("#annotate-phase input[value=C]").is_checked()
    page.locator("#annotate-next_action textarea").fill("Clip the cystic duct <b>twice</b>")
    page.keyboard.press("Control+Enter")
    page.locator("#annotate-status", has_text="Version 1 (awaiting approval)").wait_for(timeout=30_000)
    page.screenshot(path=str(artifact_path("annotate-submitted.png")), full_page=True)

    with server.db.session_scope() as session:
        saved = session.scalars(select(Annotation).where(Annotation.case_id == server.case_id)).one()
        assert (saved.status, saved.phase, saved.next_action) == ("submitted", "C",
                                                                  "Clip the cystic duct <b>twice</b>")
        moved = DRAG_PX / scale
        assert saved.box[0] == pytest.approx(x1 + moved, abs=4) and saved.box[2] == pytest.approx(x2 + moved, abs=4)
        assert saved.box[1] == pytest.approx(y1, abs=4) and saved.box[3] == pytest.approx(y2, abs=4)
        assert saved.source.startswith("model:") and saved.source_prediction_id is not None
        annotation_id, box = saved.id, saved.box

    chief = page.context.browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    login(chief, server, "e2e-chief")  # lands on the Approve tab with the oldest submission shown
    details = chief.locator("#approve-details")
    details.locator("text=box IoU").wait_for(timeout=30_000)
    assert "version 1 by e2e-ann" in details.inner_text()
    # The new words are marked in the diff and shown as the text they are, not as markup.
    assert chief.locator("#approve-details ins", has_text="<b>twice</b>").count() == 1
    chief.screenshot(path=str(artifact_path("approve.png")), full_page=True)
    chief.locator("#approve-approve").click()
    details.locator("text=Nothing awaits review").wait_for(timeout=30_000)
    chief.context.close()

    with server.db.session_scope() as session:
        label = session.scalar(select(Label).where(Label.case_id == server.case_id, Label.is_current))
        assert label.source == f"annotation:{annotation_id}" and label.box == box and label.phase == "C"
        assert session.get(Annotation, annotation_id).status == "approved"
