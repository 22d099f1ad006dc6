"""The Review and Studies tabs in headless Chromium against the real app (``surgreview serve --demo`` in a
subprocess): a reviewer scores three items with the keyboard only, reloads and resumes at item 4, revises
and skips with keys; a second reviewer sees only their own queue and is refused the first's items on the
server; an admin creates a study in the Studies tab and reads its results as plotly charts; reviewers are
refused the Studies handlers through Gradio's API."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from app.settings import Settings
from db.engine import Database
from db.schema import Judgment, ReviewItem
from db.users import actor, find_user
from review import studies
from tests.browser import (
    PASSWORD,
    artifact_path,
    choose_dropdown,
    login,
    require_browser,
    start_app,
)
from tests.review_app import DEMO_MODELS, create_demo_study
from tests.web_helpers import login as http_login

USERS = {"e2e-admin": ("admin",), "e2e-rev1": ("reviewer",), "e2e-rev2": ("reviewer",)}
PER_REVIEWER = 8  # 16 demo cases, k=1, two reviewers


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    server = start_app(tmp_path_factory.mktemp("review-e2e"), USERS)
    server.db = Database.from_url(Settings(data_dir=server.data_dir).database_url)
    server.study_id = create_demo_study(server.db, "e2e-admin", "Keyboard study", ["e2e-rev1", "e2e-rev2"])
    yield server
    server.db.dispose()
    server.stop()


def _queue(server, username: str) -> list[ReviewItem]:
    with server.db.session_scope() as session:
        user = find_user(session, username)
        return list(session.scalars(select(ReviewItem).where(ReviewItem.study_id == server.study_id,
                                                             ReviewItem.reviewer_id == user.id)
                                    .order_by(ReviewItem.position)))


def _judgments(server, item_id: int) -> list[Judgment]:
    with server.db.session_scope() as session:
        rows = session.scalars(select(Judgment).where(Judgment.item_id == item_id).order_by(Judgment.revision))
        return [(j.revision, j.is_current, j.best_letter, {r.letter: (r.correct, r.level1, r.flags)
                                                            for r in j.ratings}, j.comment, j.time_spent_ms)
                for j in rows]


def _keys(page, *keys: str) -> None:
    for key in keys:
        page.keyboard.press(key)


def _wait_item(page, number: int) -> None:
    page.locator("#review-question", has_text=f"Item {number} of {PER_REVIEWER}").wait_for(timeout=30_000)
    page.locator("#review-panel-C section").wait_for(timeout=30_000)


def _score_with_keys(page, number: int) -> None:
    """Best pick, a rating for every output, levels and a flag, a comment; submit; next."""
    _wait_item(page, number)
    _keys(page, str(number), "Shift+Digit1", "7", "8", "Shift+Digit2", "Shift+Digit2", "Shift+Digit3",
          "b", "h", "/")
    page.keyboard.type(f"keyboard {number}")
    _keys(page, "Escape", "Enter")
    page.locator("#review-status", has_text="Stored: revision 1").wait_for(timeout=15_000)
    page.locator("#review-progress", has_text=f"{number} / {PER_REVIEWER}").wait_for(timeout=15_000)
    page.keyboard.press("n")


def test_a_reviewer_scores_three_items_with_the_keyboard_only_and_resumes_after_a_reload(server, page):
    login(page, server, "e2e-rev1")  # the last click: from here on, keys only
    for number in (1, 2, 3):
        _score_with_keys(page, number)
    _wait_item(page, 4)
    page.reload()
    _wait_item(page, 4)  # resumed where the reviewer left off
    assert "3 / 8" in page.locator("#review-progress").inner_text()
    page.screenshot(path=str(artifact_path("review.png")), full_page=True)

    queue = _queue(server, "e2e-rev1")
    assert [item.state for item in queue[:4]] == ["judged", "judged", "judged", "open"]
    for number, item in enumerate(queue[:3], start=1):
        [(revision, current, best, ratings, comment, spent)] = _judgments(server, item.id)
        assert (revision, current, best, comment) == (1, True, "ABC"[number - 1], f"keyboard {number}")
        assert ratings == {"A": (1, "correct", []), "B": (0, None, ["hallucination"]), "C": (1, None, [])}
        assert 0 < spent < 120_000  # measured in the browser from display to submit

    # Revise item 3 (p), then skip item 4 with a reason (s, type, Enter): keys only.
    page.keyboard.press("p")
    page.locator("#review-status", has_text="Already judged: revision 1").wait_for(timeout=15_000)
    assert "Item 3 of 8" in page.locator("#review-question").inner_text()
    _keys(page, "1", "Enter")
    page.locator("#review-status", has_text="Stored: revision 2").wait_for(timeout=15_000)
    _keys(page, "n")
    _wait_item(page, 4)
    page.keyboard.press("s")
    page.keyboard.type("frame too dark")
    page.keyboard.press("Enter")
    _wait_item(page, 5)
    assert "3 / 8" in page.locator("#review-progress").inner_text()
    assert "1 skipped" in page.locator("#review-progress").inner_text()
    revisions = _judgments(server, queue[2].id)
    assert [(r[0], r[1], r[2]) for r in revisions] == [(1, False, "C"), (2, True, "A")]
    assert _queue(server, "e2e-rev1")[3].skipped_reason == "frame too dark"


def test_a_second_reviewer_sees_only_their_own_queue_and_is_refused_the_firsts_items(server, page):
    theirs = _queue(server, "e2e-rev1")[0]
    login(page, server, "e2e-rev2")
    _wait_item(page, 1)
    assert "0 / 8" in page.locator("#review-progress").inner_text()
    assert {i.case_id for i in _queue(server, "e2e-rev2")}.isdisjoint({i.case_id for i in _queue(server, "e2e-rev1")})
    # Through Gradio's API the first reviewer's token is refused (Gradio checks a dropdown value against this
    # session's own choices before the handler runs; the handler's own ownership check is tested by calling
    # it directly in tests/test_review_tabs.py) and nothing of the item comes back.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    events = _call(server, cookies, "review_open_item", [server.study_id, theirs.token])
    assert "event: error" in events and "Output A" not in events and "Answer" not in events


def _call(server, cookies: dict[str, str], api: str, data: list) -> str:
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
        started = client.post(f"/app/gradio_api/call/{api}", json={"data": data})
        assert started.status_code == 200, started.text
        return client.get(f"/app/gradio_api/call/{api}/{started.json()['event_id']}").text


def test_reviewers_are_refused_the_studies_handlers_through_the_api(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert http_login(client, "e2e-rev1", PASSWORD).status_code == 303
        cookies = dict(client.cookies)
    # Values Gradio's own input checks accept for a fresh API session, so the call reaches the handler.
    form = ["Sneaky", "gozone", [], "(any)", "(any)", "(any)", "(any)", [], 1, "never", 0, False, None]
    for api, data in (("study_results", [None]), ("study_results_csv", [None, "ratings"]),
                      ("create_study", form)):
        events = _call(server, cookies, api, data)
        assert "event: error" in events and "needs the admin role" in events, (api, events)
        assert not any(name in events for name in DEMO_MODELS)
    with server.db.session_scope() as session:
        assert all(s.name != "Sneaky" for s in studies.list_studies(session, actor(session, "e2e-admin")))


def _judge_some(server, study_id: int) -> None:
    """Two judgments per reviewer through the service (the browser part is tested above)."""
    with server.db.session_scope() as session:
        for username in ("e2e-rev1", "e2e-rev2"):
            reviewer = actor(session, username)
            for best in ("A", "B"):
                item = studies.next_item(session, reviewer, study_id).item
                ratings = {o.letter: {"correct": int(o.letter == best), "levels": {1: "correct", 2: "wrong"}}
                           for o in item.outputs}
                studies.submit_judgment(session, reviewer, item.token, best, ratings, time_spent_ms=4000)


def test_an_admin_creates_a_study_in_the_studies_tab_and_reads_its_results(server, page):
    login(page, server, "e2e-admin")
    page.get_by_role("tab", name="Studies").click(timeout=30_000)
    page.locator("#studies-models input[type=checkbox]").first.wait_for(state="visible", timeout=30_000)
    page.locator("#studies-name textarea").fill("Created in the browser")
    for name in DEMO_MODELS:
        page.locator("#studies-models label", has_text=name).first.click()
    choose_dropdown(page, "studies-filter-dataset", "demo")
    for name in ("e2e-rev1", "e2e-rev2"):
        page.locator("#studies-reviewers label", has_text=name).first.click()
    page.locator("#studies-k input").fill("1")
    page.click("#studies-create")
    page.locator("#studies-setup", has_text="16 cases assigned, 16 review items").wait_for(timeout=30_000)

    with server.db.session_scope() as session:
        created = next(s.id for s in studies.list_studies(session, actor(session, "e2e-admin"))
                       if s.name == "Created in the browser")
    _judge_some(server, created)
    page.click("#studies-results")
    for plot in ("rates", "bt", "levels"):
        page.locator(f"#studies-plot-{plot} .js-plotly-plot").wait_for(timeout=30_000)
    assert "4 items judged by 2 reviewers" in page.locator("#studies-summary").inner_text()
    selected = page.locator("#studies-table-selected").inner_text()
    assert all(name in selected for name in DEMO_MODELS)  # unblinded here, for the admin
    with page.expect_download(timeout=30_000) as download:
        page.click("#studies-csv")
    csv = download.value.path().read_text()
    assert csv.startswith("item,case,reviewer") and csv.count("\n") == 4 * 3 + 1
    page.screenshot(path=str(artifact_path("studies.png")), full_page=True)
