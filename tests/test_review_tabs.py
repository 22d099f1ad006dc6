"""The Review and Studies tab handlers called as Gradio calls them (the functions wired into the Blocks, with
a gr.Request naming the user): roles and ownership are checked on the server, whatever the browser sends."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pytest
from sqlalchemy import func, select

from app import render
from app.keyboard import KEY_HELP, REVIEW_KEYS_JS
from app.main import build_blocks
from db.schema import Judgment, ReviewItem
from db.users import actor, create_user, find_user
from review import studies
from review.blinding import BlindOutput
from tests.review_app import DEMO_MODELS, create_demo_study, load_demo
from tests.web_helpers import PASSWORD, make_services

USERS = {"tab-admin": ("admin",), "tab-rev1": ("reviewer",), "tab-rev2": ("reviewer",),
         "tab-outsider": ("reviewer",)}
STUDIES_HANDLERS = {"results": ("x",), "download": ("x", "ratings"), "extend_reviewers": ("x", ["tab-rev1"]),
                    "extend_cases": ("x", "demo", "(any)", "(any)", "(any)", None), "close": ("x",),
                    "create": ("Sneaky", "gozone", list(DEMO_MODELS), "demo", "(any)", "(any)", "(any)",
                               ["tab-rev1"], 1, "never", 0, False, None)}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("tabs") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in USERS.items():
            create_user(session, name, password=PASSWORD, roles=roles)
    study_id = create_demo_study(services.db, "tab-admin", "Handlers", ["tab-rev1", "tab-rev2"])
    blocks = build_blocks(services)
    handlers = {fn.fn.__qualname__: fn.fn for fn in blocks.fns.values() if fn.fn is not None}
    yield services, study_id, handlers, blocks
    services.close()


def _request(username: str) -> gr.Request:
    return gr.Request(username=username)


def _items(services, study_id: int, username: str) -> list[ReviewItem]:
    with services.db.session_scope() as session:
        user = find_user(session, username)
        return list(session.scalars(select(ReviewItem).where(ReviewItem.study_id == study_id,
                                                             ReviewItem.reviewer_id == user.id)
                                    .order_by(ReviewItem.position)))


def _judgment_count(services) -> int:
    with services.db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Judgment))


@pytest.mark.parametrize("name", sorted(STUDIES_HANDLERS))
def test_a_reviewer_is_refused_every_studies_handler(app, name):
    _, study_id, handlers, _ = app
    args = [study_id if a == "x" else a for a in STUDIES_HANDLERS[name]]
    with pytest.raises(gr.Error, match="needs the admin role"):
        handlers[f"StudiesHandlers.{name}"](_request("tab-rev1"), *args)
    # Nor does the page load give a reviewer the models, reviewers or studies.
    assert all(update == gr.skip() for update in handlers["StudiesHandlers.populate"](_request("tab-rev1")))


def test_an_admin_who_is_not_a_reviewer_is_refused_the_queue(app):
    _, study_id, handlers, _ = app
    with pytest.raises(gr.Error, match="needs the reviewer role"):
        handlers["ReviewHandlers.open_study"](_request("tab-admin"), study_id)
    assert handlers["ReviewHandlers.populate"](_request("tab-admin")) == gr.skip()
    with pytest.raises(gr.Error, match="not a reviewer of this study"):
        handlers["ReviewHandlers.open_study"](_request("tab-outsider"), study_id)


def test_a_reviewer_cannot_read_or_write_another_reviewers_item(app):
    services, study_id, handlers, _ = app
    theirs = _items(services, study_id, "tab-rev1")[0].token
    before = _judgment_count(services)
    calls = {"open_item": (study_id, theirs), "previous": (study_id, theirs),
             "submit": (1000, study_id, theirs, "A", "", *([1, None, None, None, []] * 3), *([None] * 10)),
             "skip": (study_id, theirs, "not mine"), "reveal": (theirs,)}
    for name, args in calls.items():
        with pytest.raises(gr.Error, match="another reviewer's queue"):
            handlers[f"ReviewHandlers.{name}"](_request("tab-rev2"), *args)
    assert _judgment_count(services) == before
    assert _items(services, study_id, "tab-rev1")[0].state == "open"


def test_the_reviewer_judges_through_the_handlers_and_the_double_blind_study_reveals_nothing(app):
    services, study_id, handlers, _ = app
    shown = handlers["ReviewHandlers.open_study"](_request("tab-rev2"), study_id)
    token = shown[0]
    assert token == _items(services, study_id, "tab-rev2")[0].token
    text = repr(shown)
    assert "Output A" in text and not any(name in text for name in DEMO_MODELS)
    with pytest.raises(gr.Error, match="Rate every output"):
        handlers["ReviewHandlers.submit"](_request("tab-rev2"), 900.0, study_id, token, "B", "",
                                          *([1, None, None, None, []] * 2), *([None] * 15))
    ratings = [1, "correct", "wrong", "na", ["hallucination"], 0, None, None, None, [], 1, None, None, None, []]
    after = handlers["ReviewHandlers.submit"](_request("tab-rev2"), 1234.4, study_id, token, "none", "ok",
                                              *ratings, *([None] * 10))
    assert "Stored: revision 1" in after[5]
    with services.db.session_scope() as session:
        judgment = session.scalar(select(Judgment).join(ReviewItem).where(ReviewItem.token == token))
        assert (judgment.best_letter, judgment.none_acceptable, judgment.time_spent_ms) == (None, True, 1234)
        assert [(r.letter, r.correct, r.level2, r.flags) for r in judgment.ratings] == [
            ("A", 1, "wrong", ["hallucination"]), ("B", 0, None, []), ("C", 1, None, [])]
    with pytest.raises(gr.Error, match="double-blind"):
        handlers["ReviewHandlers.reveal"](_request("tab-rev2"), token)


def test_the_admin_reads_results_with_charts(app):
    services, study_id, handlers, _ = app
    with services.db.session_scope() as session:  # one more judgment, whatever ran before
        reviewer = actor(session, "tab-rev2")
        item = studies.next_item(session, reviewer, study_id).item
        ratings = {o.letter: {"correct": 1, "levels": {1: "wrong"}} for o in item.outputs}
        studies.submit_judgment(session, reviewer, item.token, "A", ratings)
    summary, rates, bt, levels, *tables = handlers["StudiesHandlers.results"](_request("tab-admin"), study_id)
    assert re.search(r"\d items judged by 1 reviewers", summary) and len(tables) == 8
    assert rates.data and bt.data and levels.data  # plotly figures (the judgment above gave data)
    path = handlers["StudiesHandlers.download"](_request("tab-admin"), study_id, "ratings")
    assert Path(path).read_text(encoding="utf-8").startswith("item,case,reviewer")


def test_every_element_the_keyboard_script_drives_exists_and_every_key_is_documented(app):
    *_, blocks = app
    elem_ids = {block.elem_id for block in blocks.blocks.values() if getattr(block, "elem_id", None)}
    driven = ["review-submit", "review-next", "review-prev", "review-reveal", "review-skip", "review-skip-reason",
              "review-comment", "review-best"]
    per_letter = ["review-correct-", "review-l", "review-flags-", "sr-rubric", "sr-slot-"]
    assert all(f"'{i}'" in REVIEW_KEYS_JS for i in driven) and all(p in REVIEW_KEYS_JS for p in per_letter)
    wanted = driven + [f"review-{kind}-{letter}" for kind in ("correct", "l1", "l2", "l3", "flags", "slot")
                       for letter in "ABCDE"]
    assert not [i for i in wanted if i not in elem_ids]
    documented = " ".join(keys for keys, _ in KEY_HELP)
    for key in ("1 - 5", "0", "Shift", "a - e", "t", "7 / 8 / 9", "h", "u", "/", "Enter", "n", "p", "s", "r"):
        assert key in documented


def test_blind_panels_escape_model_text_and_give_every_output_the_same_sections():
    hostile = BlindOutput("A", "#5B6770", "<script>alert(1)</script>", {"1": "<img src=x onerror=alert(2)>"},
                          None, {"location": "<b>here</b>"}, [{"box": [10, 20, 30, 40]}])
    bare = BlindOutput("B", "#8A6F4E", None)
    full, empty = (render.blind_panel_html(o, boxes=True, rationale=True) for o in (hostile, bare))
    assert "<script" not in full and "<img" not in full and "<b>here" not in full
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in full and "(10, 20) - (30, 40) px" in full
    assert 'style="border-top-color:#5B6770"' in full and "#8A6F4E" in empty

    def sections(panel: str) -> list[str]:
        return [s.replace(" (not given)", "") for s in re.findall(r"<(?:summary|dt)>([^<]*)<", panel)]

    assert sections(full) == sections(empty) and len(sections(full)) == 8  # 3 levels, rationale + 4 parts


def test_the_setup_report_shows_each_assigned_cases_informativeness_escaped():
    from types import SimpleNamespace

    from app.tabs.studies import setup_html

    setup = SimpleNamespace(study=SimpleNamespace(name="<b>x</b>"), assigned=[1, 2], items=4, missing={},
                            leaks={}, scores={"demo/v/000125": 0.8333, "demo/v/<i>250</i>": 0.0})
    html = setup_html(setup, "created")
    assert "demo/v/000125</td><td>0.83" in html and "0.00" in html
    assert "<i>" not in html and "&lt;i&gt;250" in html and "<b>x</b>" not in html
