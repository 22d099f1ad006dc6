"""The hostile input corpus (tests/hostile_corpus.py) fed through the web app's handlers: the annotation
editor, review judgments and skips, studies, teaching collections and quizzes, approvals, user accounts,
exports, Compare and Review pages. Every item is either rejected with a message that says what is wrong or
stored as inert text (HTML the handlers return holds the escaped form, never a raw ``<script``); after the
whole corpus the app still serves. The importers and files are tests/test_hostile_files.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from annotation.importers.predictions import import_predictions
from annotation.queue import assign_annotators
from app.main import build_app
from app.services import Services
from app.settings import Settings
from app.tabs.annotate import AnnotateHandlers
from app.tabs.approve import ApproveHandlers
from app.tabs.compare import CompareHandlers
from app.tabs.exports import ExportHandlers
from app.tabs.review import ReviewHandlers
from app.tabs.studies import StudiesHandlers
from app.teach_handlers import TeachHandlers
from db.cases import CaseFilter
from db.errors import Conflict, DomainError
from db.schema import (
    Annotation,
    Case,
    Collection,
    CollectionItem,
    Judgment,
    QuizAttempt,
    ReviewItem,
    Study,
    User,
)
from db.users import actor, canonical_username, create_user, find_user
from review.studies import create_study
from tests.conftest import create_postgres_database
from tests.hostile_corpus import CORPUS, MEGABYTE, STRINGS, USERNAMES, assert_inert, hostile_case, storable
from tests.review_app import DEMO_MODELS, load_demo
from tests.web_helpers import PASSWORD, login

# --- the web app's handlers ----------------------------------------------------------------------------------

SITE_USERS = {"h-admin": ("admin",), "h-rev": ("reviewer",), "h-ann": ("annotator",), "h-chief": ("approver",),
              "h-edu": ("educator",), "h-res": ("resident",)}


def _req(username: str) -> gr.Request:
    return gr.Request(username=username)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request, tmp_path_factory):
    """The demo pack, one user per role, a study for the reviewer, a case for the annotator and a shared
    collection for the resident; on SQLite and on PostgreSQL (which refuses NUL and over-long names)."""
    data_dir = tmp_path_factory.mktemp(f"hostile-{request.param}") / "data"
    drop = None
    url = ""
    if request.param == "postgres":
        url, drop = create_postgres_database()
    services = Services.from_settings(Settings(data_dir=data_dir, database_url=url))
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in SITE_USERS.items():
            create_user(session, name, password=PASSWORD, roles=roles)
        cases = list(session.scalars(select(Case.id).where(Case.dataset == "demo").order_by(Case.key)))
        assign_annotators(session, actor(session, "h-admin"), cases[:3], [find_user(session, "h-ann").id])
    handlers = SimpleNamespace(review=ReviewHandlers(services, 51), studies=StudiesHandlers(services),
                               annotate=AnnotateHandlers(services), approve=ApproveHandlers(services),
                               teach=TeachHandlers(services), compare=CompareHandlers(services),
                               exports=ExportHandlers(services))
    study_html, study = handlers.studies.create(
        _req("h-admin"), "Hostile <b>study</b>", "gozone", list(DEMO_MODELS), "demo", "(any)", "(any)", "(any)",
        ["h-rev"], 1, "never", 0, False, 8)
    assert "Hostile &lt;b&gt;study&lt;/b&gt;" in study_html
    yield SimpleNamespace(services=services, h=handlers, study_id=study.value, cases=cases, kind=request.param)
    services.close()
    if drop is not None:
        drop()


@pytest.mark.parametrize("name", sorted(USERNAMES["duplicates"]))
def test_look_alike_usernames_are_refused_as_duplicates(site, name):
    original, look_alike = USERNAMES["duplicates"][name]
    with site.services.db.session_scope() as session:
        if find_user(session, original) is None:
            create_user(session, original, password=PASSWORD, roles=("reviewer",))
    assert canonical_username(look_alike) == original
    with site.services.db.session_scope() as session, pytest.raises(Conflict, match="is taken"):
        create_user(session, look_alike, password=PASSWORD, roles=("reviewer",))


@pytest.mark.parametrize("name", sorted(USERNAMES["refused"]))
def test_hostile_usernames_are_refused_with_the_rule(site, name):
    with site.services.db.session_scope() as session, pytest.raises(DomainError, match="letters a-z, digits"):
        create_user(session, USERNAMES["refused"][name], password=PASSWORD, roles=("reviewer",))


@pytest.mark.parametrize("password", ["pass\x00word-long", "pass\ud800word-long", "x" * 2000])
def test_hostile_passwords_are_refused_or_hashed(site, password):
    with site.services.db.session_scope() as session:
        try:
            user = create_user(session, f"pw{len(password)}-{ord(password[4]) % 1000}", password=password)
        except DomainError as exc:
            assert "password" in str(exc).lower()
        else:
            assert user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize("name", ["display_nul", "display_long"])
def test_hostile_display_names_are_stored_cleaned_and_cut(site, name):
    value = {"display_nul": "Dr \x00 Evil <script>", "display_long": "x" * 5000}[name]
    with site.services.db.session_scope() as session:
        user = create_user(session, f"h-{name}", password=PASSWORD, display_name=value)
        assert user.display_name == storable(value)[:200]


HOSTILE_TEXTS = {**STRINGS, "one_megabyte": MEGABYTE}


def _error_of(call) -> str:
    """The message of the DomainError ``call`` raises, or "" when it succeeds."""
    try:
        call()
    except DomainError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_study_names_are_escaped_or_refused(site, name):
    text = HOSTILE_TEXTS[name]
    created = []

    def create() -> None:
        created.append(site.h.studies.create(_req("h-admin"), text, "gozone", list(DEMO_MODELS), "demo", "(any)",
                                             "(any)", "(any)", ["h-rev"], 1, "never", 0, False, 1))

    error = _error_of(create)
    if error:
        assert "study name" in error.lower(), error
        return
    [(page, _)] = created
    assert_inert(page, text.strip())


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_comments_and_skip_reasons_are_stored_as_text(site, name):
    text = HOSTILE_TEXTS[name]
    with site.services.db.session_scope() as session:
        study_id = create_study(session, actor(session, "h-admin"), name=f"comments {name}", task="gozone",
                                model_names=DEMO_MODELS, case_filter=CaseFilter(dataset="demo"),
                                reviewers=["h-rev"], k=1, reveal_policy="never", seed=1, limit=2).study.id
    shown = site.h.review.open_study(_req("h-rev"), study_id)
    token = shown[0]
    letters = [c[0] if isinstance(c, tuple) else c for c in shown[8].choices][:-1]
    values = []
    for letter in ("A", "B", "C", "D", "E"):
        values += [1 if letter in letters else None, None, None, None, []]
    after = site.h.review.submit(_req("h-rev"), 1000, study_id, token, "A", text, *values)
    assert "Stored: revision 1" in after[5]
    with site.services.db.session_scope() as session:
        item = session.scalar(select(ReviewItem).where(ReviewItem.token == token))
        judgment = session.scalar(select(Judgment).where(Judgment.item_id == item.id, Judgment.is_current))
        assert judgment.comment == (storable(text.strip()) or None)
    next_token = site.h.review.open_study(_req("h-rev"), study_id)[0]
    site.h.review.skip(_req("h-rev"), study_id, next_token, text)
    with site.services.db.session_scope() as session:
        item = session.scalar(select(ReviewItem).where(ReviewItem.token == next_token))
        assert (item.state, item.skipped_reason) == ("skipped", storable(text.strip()))


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_collection_names_notes_and_points_are_escaped_or_refused(site, name):
    text = HOSTILE_TEXTS[name]
    teach = site.h.teach
    created = []
    error = _error_of(lambda: created.append(teach.create_collection(_req("h-edu"), text)))
    if error:
        assert "collection name" in error.lower(), error
        collection_id = teach.create_collection(_req("h-edu"), f"fallback {name}")[0].value
    else:
        collection_id = created[0][0].value
        assert created[0][2] == " ".join(storable(text).split())  # the name as stored, shown in a textbox
    key = "demo/demo_vid01/000500"
    teach.add_by_key(_req("h-edu"), collection_id, key)
    with site.services.db.session_scope() as session:
        case_id = session.scalar(select(Case.id).where(Case.key == key))
    error = _error_of(lambda: teach.save_notes(_req("h-edu"), collection_id, case_id, text, text))
    if error:
        assert "at most" in error, error
        return
    teach.save_collection(_req("h-edu"), collection_id, f"shared {name}", text, True, "")
    slide = teach.start(_req("h-edu"), collection_id, None)
    for _ in range(6):
        slide = teach.step(_req("h-edu"), slide[0], "next_step")
    assert_inert(slide[3] + slide[4], text.strip())
    # A resident's quiz answer texts are kept and shown back escaped.
    question = teach.quiz_start(_req("h-res"), collection_id)
    canvas = {"image": None, "boxes": [{"xmin": 100, "ymin": 100, "xmax": 300, "ymax": 300}]}
    error = _error_of(lambda: question.append(teach.quiz_submit(_req("h-res"), question[0], canvas, "B", text,
                                                                text)))
    if error:
        assert "at most" in error, error
    else:
        assert_inert(question[-1][0], text.strip())


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_annotation_texts_and_rejection_comments_are_escaped_or_refused(site, name):
    text = HOSTILE_TEXTS[name]
    annotate, approve = site.h.annotate, site.h.approve
    case_id = site.cases[0]
    shown = annotate.open_case(case_id, _req("h-ann"))
    ids, value = shown[0], shown[1]
    value = {**value, "boxes": [{"xmin": 100, "ymin": 100, "xmax": 300, "ymax": 300, "label": "Go Zone"}]}
    error = _error_of(lambda: shown.append(annotate.save(True, ids, value, "B", text, text, text, text,
                                                         request=_req("h-ann"))))
    if error:
        assert "the limit is" in error, error
        return
    after = shown[-1]
    assert_inert(after[9], text.strip())  # the history
    with site.services.db.session_scope() as session:
        version = session.get(Annotation, after[0]["base_id"])
        assert version.location == storable(text.strip())
    shown_to_chief = approve.show(version.id, _req("h-chief"))
    assert_inert(shown_to_chief[0], text.strip())
    approve.decide(False, version.id, text, _req("h-chief"))
    reopened = annotate.open_case(case_id, _req("h-ann"))
    assert_inert(reopened[8], text.strip())  # the status line quotes the approver's comment


@pytest.mark.parametrize("name", sorted(json.loads((CORPUS / "editor_boxes.json").read_text())))
def test_hostile_editor_boxes_are_refused_with_a_clear_message(site, name):
    box = json.loads((CORPUS / "editor_boxes.json").read_text())[name]
    annotate = site.h.annotate
    shown = annotate.open_case(site.cases[1], _req("h-ann"))
    value = {**shown[1], "boxes": [box]}
    with pytest.raises(DomainError) as raised:
        annotate.save(False, shown[0], value, "B", "", "", "", "", request=_req("h-ann"))
    message = str(raised.value)
    assert any(words in message for words in ("A box is four numbers", "not a finite number", "lies outside",
                                              "has no area")), message


def test_hostile_model_outputs_are_rendered_inert_in_compare_and_review(site, tmp_path):
    services = site.services
    with services.db.session_scope() as session:
        case = hostile_case(session, services.frames, tmp_path)
        summary = import_predictions(session, CORPUS / "predictions.jsonl")
        assert summary.imported
        case_id = case.id
    hostile = "m-script-raw"
    panels = list(site.h.compare.run_compare(case_id, "gozone", [hostile, "m-nul-raw", "m-sql-raw"],
                                             _req("h-admin")))[-1]
    page = "".join(part for part in panels[:4] if isinstance(part, str))
    assert_inert(page, "<script>alert('answer')</script>", "'); DROP TABLE predictions;--")
    # The same outputs blind, in a reviewer's queue.
    with services.db.session_scope() as session:
        study = create_study(session, actor(session, "h-admin"), name="Hostile outputs", task="gozone",
                             model_names=[hostile, "m-sql-raw", "m-nan-raw"],
                             case_filter=CaseFilter(dataset="hostile"), reviewers=["h-rev"], k=1,
                             reveal_policy="after_submit", seed=1).study
        study_id = study.id
    shown = site.h.review.open_study(_req("h-rev"), study_id)
    page = "".join(part for part in shown if isinstance(part, str))
    assert_inert(page, "<script>alert('think')</script>")
    assert page.count('class="sr-panel sr-blind"') == 3


@pytest.mark.parametrize("folder", ["../../etc", "..", "a/b", "/tmp/x", "<script>", "x\x00y", "x" * 101])
def test_an_export_folder_name_cannot_leave_the_exports_folder(site, folder):
    with pytest.raises(DomainError, match="no slashes"):
        site.h.exports.run(_req("h-admin"), "sft", folder, "(any)", "(any)", "(any)", False, "", "", "qwen25", 1,
                           "drop", "keep", "gozone", False)


# --- the server keeps serving -------------------------------------------------------------------------------

def test_after_the_corpus_the_app_still_serves(site):
    """Runs after the handler tests of the same module (and database): health, sign-in and the page load."""
    with site.services.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(User)) >= len(SITE_USERS)
        assert session.scalar(select(func.count()).select_from(Study)) >= 2
        assert session.scalar(select(func.count()).select_from(Collection)) >= 1
        assert session.scalar(select(func.count()).select_from(CollectionItem)) >= 1
        session.scalar(select(func.count()).select_from(QuizAttempt))
    app = build_app(site.services)
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert login(client, "h-admin").status_code == 303
        page = client.get("/app/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert client.get("/app/config").status_code == 200
        # A hostile sign-in attempt is a plain refusal, not an error.
        for name in ("<script>alert(1)</script>", "adm\x00in", "x" * 100_000, "' OR 1=1 --"):
            client.cookies.clear()
            assert login(client, name, "whatever1").status_code == 401


def test_a_value_the_database_refuses_reaches_the_user_as_a_clear_message():
    """The last line of defence when a service missed a length or character check (PostgreSQL's DataError)."""
    from sqlalchemy.exc import DataError

    from app.errors import as_gradio_error

    refused = DataError("INSERT ...", {}, Exception("value too long for type character varying(200)"))
    message = str(as_gradio_error(refused))
    assert "too long or holds characters the database cannot store" in message and "reference" not in message
