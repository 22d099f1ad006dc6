"""Access through the HTTP API of the running app: every role (and a user without one) against every Gradio
handler, found by walking ``blocks.fns`` (so a new handler without a role check fails here); one user's session
cannot reach another's data (a reviewer's item tokens, an annotator's lane in an agreement study, a resident's
quiz attempts, an educator's private collection); CSRF on every state-changing route; login rate limits by
username and by client address (behind a proxy); secure cookie settings behind HTTPS.
"""

from __future__ import annotations

import json
import sys
import uuid
from types import SimpleNamespace
from typing import Any

import gradio as gr
import httpx
import pytest
from sqlalchemy import select

from annotation.queue import assign_annotators
from annotation.workflow import GoZoneDraft, history, save_version
from app.auth import SESSION_COOKIE
from app.main import build_app
from app.teach_handlers import TeachHandlers
from db.errors import DomainError, NotFound, PermissionDenied
from db.schema import ROLES, Case
from db.users import actor, create_user, find_user
from review.teaching import collections as col
from review.teaching.quiz import submit_attempt
from tests.review_app import create_demo_study, load_demo
from tests.web_helpers import PASSWORD, csrf_token, login, make_services, running_server

ROLE_USERS = {f"m-{role}": (role,) for role in ROLES} | {"m-norole": ()}
OTHER_USERS = {"m-reviewer2": ("reviewer",), "m-annotator2": ("annotator",), "m-resident2": ("resident",),
               "m-educator2": ("educator",)}
SECRETS = {"lane": "SECRET-LANE-OF-ANNOTATOR-ONE", "attempt": "SECRET-ATTEMPT-OF-RESIDENT-ONE",
           "collection": "SECRET-PRIVATE-COLLECTION"}
EVERYONE = frozenset(ROLE_USERS)  # handlers of the page itself: any signed-in user, about themselves
# The Teach tab serves two roles; each handler is for one or both (app/teach_handlers.py). A new TeachHandlers
# method must be added here, or the matrix fails.
TEACH = {"populate": {"educator", "resident"}, "results": {"educator", "resident"},
         "open_attempt": {"educator", "resident"}, "quiz_start": {"resident"}, "quiz_next": {"resident"},
         "quiz_previous": {"resident"}, "quiz_submit": {"resident"},
         **{name: {"educator"} for name in (
             "open_collection", "create_collection", "save_collection", "delete_collection", "list_cases",
             "add_selected", "add_matching", "add_by_key", "open_item", "save_notes", "move_up", "move_down",
             "remove_item", "start", "step", "collect_choices", "collect")}}
ROLE_REFUSAL = ("needs the", "not a reviewer of this study", "sign in again")


# --- the site -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("access") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in {**ROLE_USERS, **OTHER_USERS}.items():
            create_user(session, name, password=PASSWORD, roles=roles)
    study_id = create_demo_study(services.db, "m-admin", "Access", ["m-reviewer", "m-reviewer2"], k=1)
    with services.db.session_scope() as session:
        cases = list(session.scalars(select(Case.id).where(Case.dataset == "demo").order_by(Case.key)))
        one, two = actor(session, "m-annotator"), actor(session, "m-annotator2")
        # An agreement study on the first case: each annotator works in a lane of their own.
        assign_annotators(session, actor(session, "m-admin"), cases[:1], [one.user_id, two.user_id], per_case=2)
        save_version(session, one, cases[0], GoZoneDraft("B", (100, 100, 300, 300), location=SECRETS["lane"]),
                     base_id=None)
        educator, other = actor(session, "m-educator"), actor(session, "m-educator2")
        private = col.create_collection(session, educator, SECRETS["collection"])
        col.add_to_collection(session, educator, private.id, cases[2])
        shared = col.create_collection(session, other, "Shared quiz", shared=True)
        col.add_to_collection(session, other, shared.id, cases[2])
        attempt = submit_attempt(session, actor(session, "m-resident"), shared.id, cases[2], phase="B",
                                 box=(100, 100, 300, 300), next_action=SECRETS["attempt"])
        ids = SimpleNamespace(study=study_id, cases=cases, private=private.id, shared=shared.id,
                              attempt=attempt.attempt_id, lane=one.user_id)
    app = build_app(services)
    with running_server(app) as url:
        cookies = {}
        for name in {**ROLE_USERS, **OTHER_USERS}:
            with httpx.Client(base_url=url) as client:
                assert login(client, name).status_code == 303
                cookies[name] = dict(client.cookies)
        blocks = next(r.app.get_blocks() for r in app.routes if getattr(r, "path", "") == "/app")
        yield SimpleNamespace(url=url, services=services, blocks=blocks, cookies=cookies, ids=ids, app=app)
    services.close()


def call(site, username: str, fn_index: int, data: list[Any], session_hash: str | None = None,
         headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run handler ``fn_index`` through Gradio's queue as ``username``: the completed message (``success``,
    ``output``), with every message's text under ``"stream"`` (what the browser would have received)."""
    session_hash = session_hash or uuid.uuid4().hex
    with httpx.Client(base_url=site.url, cookies=site.cookies[username], timeout=60) as client:
        joined = client.post("/app/gradio_api/queue/join", headers=headers or {},
                             json={"data": data, "fn_index": fn_index, "session_hash": session_hash,
                                   "trigger_id": None, "event_data": None})
        if joined.status_code != 200:
            return {"success": False, "status": joined.status_code, "output": joined.json(), "stream": joined.text}
        event_id, stream = joined.json()["event_id"], []
        with client.stream("GET", "/app/gradio_api/queue/data", params={"session_hash": session_hash}) as events:
            for line in events.iter_lines():
                if not line.startswith("data:"):
                    continue
                stream.append(line)
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    return {**message, "stream": "\n".join(stream)}
    raise AssertionError(f"no completion for fn {fn_index}")


def default_inputs(blocks, fn) -> list[Any]:
    """What a fresh page would send: every input component's initial value (States are held server-side)."""
    values = []
    for block in fn.inputs:
        value = getattr(block, "value", None)
        values.append(None if callable(value) else value)
    return values


def allowed_roles(fn) -> frozenset[str]:
    """The users (by name) who may run ``fn``: those holding one of its tab's ROLES."""
    inner = getattr(fn.fn, "__wrapped__", fn.fn)
    module, name = inner.__module__, inner.__qualname__.rsplit(".", 1)[-1]
    if module == "app.main":
        return EVERYONE
    if module == "app.teach_handlers":
        assert name in TEACH, f"TeachHandlers.{name} is new: add its roles to TEACH"
        roles = TEACH[name]
    else:
        roles = sys.modules[module].ROLES
    return frozenset(user for user, held in ROLE_USERS.items() if set(held) & set(roles))


def no_data(output: dict[str, Any]) -> bool:
    """True when every output value is empty: None, "", a skip, or an update that only hides something."""
    def empty(value: Any) -> bool:
        if value in (None, "", [], {}):
            return True
        if not (isinstance(value, dict) and value.get("__type__") == "update"):
            return False
        rest = {k: v for k, v in value.items() if k != "__type__"}
        props = rest.pop("props", None)  # Gradio 6 nests a skip's (empty) update under "props" for some
        return (props is None or empty(props)) and set(rest) <= {"visible"} and not rest.get("visible")
    return all(empty(v) for v in output.get("data", []))


def handlers(blocks) -> list[tuple[int, Any]]:
    return [(index, fn) for index, fn in blocks.fns.items() if fn.fn is not None]


def test_the_matrix_covers_every_handler(site):
    found = handlers(site.blocks)
    assert len(found) > 80
    for _, fn in found:
        allowed_roles(fn)  # every handler maps to roles (teach handlers by name)


@pytest.mark.parametrize("username", sorted(ROLE_USERS))
def test_every_role_against_every_handler(site, username):
    """Allowed: the handler runs (it may ask for input, but never refuses the role). Not allowed: a role
    refusal, or outputs that hold nothing. Nobody ever sees an unexpected error."""
    problems = []
    for index, fn in handlers(site.blocks):
        name = f"#{index} {fn.api_name}"
        result = call(site, username, index, default_inputs(site.blocks, fn))
        text = result["stream"]
        if "Something went wrong" in text or result.get("status", 200) >= 500:
            problems.append(f"{name}: unexpected error {text[:300]}")
            continue
        error = str((result.get("output") or {}).get("error") or "")
        refused = not result["success"] and any(words in error for words in ROLE_REFUSAL)
        if username in allowed_roles(fn):
            if refused:
                problems.append(f"{name}: refused an allowed user: {error}")
        elif not (refused or (result["success"] and no_data(result["output"]))):
            problems.append(f"{name}: a user without the role got {json.dumps(result.get('output'))[:300]}")
    assert not problems, "\n".join(problems)


# --- one user's session cannot reach another's data --------------------------------------------------------------

def _fn(site, qualname: str, api_name: str | None = None) -> int:
    for index, fn in handlers(site.blocks):
        inner = getattr(fn.fn, "__wrapped__", fn.fn)
        if inner.__qualname__ == qualname and (api_name is None or fn.api_name == api_name):
            return index
    raise AssertionError(qualname)


def test_a_reviewer_cannot_use_another_reviewers_item_token(site):
    """Even holding the other reviewer's Gradio session (and so the item token in its state), a reviewer's
    submit, skip and reveal are refused, and nothing of the item comes back."""
    theirs = uuid.uuid4().hex
    populate = call(site, "m-reviewer", _fn(site, "ReviewHandlers.populate"), [], theirs)
    assert populate["success"]
    opened = call(site, "m-reviewer", _fn(site, "ReviewHandlers.open_study", "open_study"), [site.ids.study],
                  theirs)
    assert opened["success"] and "Output A" in opened["stream"]
    with site.services.db.session_scope() as session:  # the token lives in the session's server-side state
        from db.schema import ReviewItem
        token = session.scalar(select(ReviewItem.token).where(
            ReviewItem.study_id == site.ids.study, ReviewItem.reviewer_id == find_user(session, "m-reviewer").id,
            ReviewItem.state == "open").order_by(ReviewItem.position).limit(1))
    rubric = [None, None, None, None, []] * 5
    for qualname, api, data in (("ReviewHandlers.submit", "review_submit",
                                 [1000, site.ids.study, None, "A", "sneaky", *rubric]),
                                ("ReviewHandlers.skip", "skip", [site.ids.study, None, "sneaky"]),
                                ("ReviewHandlers.reveal", "review_reveal", [None])):
        result = call(site, "m-reviewer2", _fn(site, qualname, api), data, theirs)
        assert not result["success"], (qualname, result["stream"][:300])
        assert "another reviewer" in str(result["output"].get("error")) or \
            "not a reviewer" in str(result["output"].get("error")), result["output"]
        assert "Output A" not in result["stream"] and token not in result["stream"]
    with site.services.db.session_scope() as session:
        from db.schema import Judgment, ReviewItem
        item = session.scalar(select(ReviewItem).where(ReviewItem.token == token))
        assert item.state == "open" and not session.scalars(select(Judgment).where(Judgment.item_id == item.id)).all()


def test_an_annotator_cannot_read_another_annotators_lane(site):
    own = uuid.uuid4().hex
    queue = call(site, "m-annotator2", _fn(site, "AnnotateHandlers.populate"), [], own)
    assert queue["success"]
    opened = call(site, "m-annotator2", _fn(site, "AnnotateHandlers.open_case", "annotate_open"),
                  [site.ids.cases[0]], own)
    assert opened["success"], opened["stream"][:300]
    assert SECRETS["lane"] not in opened["stream"]
    with site.services.db.session_scope() as session:
        other = actor(session, "m-annotator2")
        with pytest.raises(PermissionDenied, match="another annotator"):
            history(session, other, site.ids.cases[0], lane=site.ids.lane)
        with pytest.raises(PermissionDenied, match="another annotator"):
            save_version(session, other, site.ids.cases[0], GoZoneDraft("B", None), base_id=None,
                         lane=site.ids.lane)


def test_a_resident_cannot_see_another_residents_attempts(site):
    own = uuid.uuid4().hex
    populate = call(site, "m-resident2", _fn(site, "TeachHandlers.populate"), [], own)
    assert populate["success"]
    results = call(site, "m-resident2", _fn(site, "TeachHandlers.results", "results"), ["(all)", 0], own)
    assert results["success"], results["stream"][:300]
    assert SECRETS["attempt"] not in results["stream"] and "m-resident\"" not in results["stream"]
    teach = TeachHandlers(site.services)
    request = gr.Request(username="m-resident2")
    with pytest.raises(PermissionDenied, match="your own quiz results"):
        teach.results(request, "m-resident", 0)
    with pytest.raises(NotFound, match="among yours"):
        teach.open_attempt(request, site.ids.attempt)
    # The educator may open it (the control: the attempt is there).
    shown = teach.open_attempt(gr.Request(username="m-educator"), site.ids.attempt)
    assert SECRETS["attempt"] in shown[0]


def test_an_educator_cannot_reach_another_educators_private_collection(site):
    own = uuid.uuid4().hex
    populate = call(site, "m-educator2", _fn(site, "TeachHandlers.populate"), [], own)
    assert populate["success"] and SECRETS["collection"] not in populate["stream"]
    assert "Shared quiz" in populate["stream"]  # the control: their own collection is listed
    mine = call(site, "m-educator", _fn(site, "TeachHandlers.populate"), [], uuid.uuid4().hex)
    assert SECRETS["collection"] in mine["stream"]
    teach = TeachHandlers(site.services)
    request = gr.Request(username="m-educator2")
    for method, args in (("open_collection", (site.ids.private,)), ("start", (site.ids.private, None)),
                         ("add_by_key", (site.ids.private, "demo/demo_vid01/000500")),
                         ("delete_collection", (site.ids.private,)),
                         ("save_notes", (site.ids.private, site.ids.cases[2], "x", "y"))):
        with pytest.raises(DomainError, match="no such collection"):
            getattr(teach, method)(request, *args)
    resident = gr.Request(username="m-resident")
    with pytest.raises(NotFound, match="no such collection"):
        teach.quiz_start(resident, site.ids.private)


# --- CSRF ---------------------------------------------------------------------------------------------------

FOREIGN = [{"origin": "https://evil.example"}, {"origin": "null"}, {"referer": "https://evil.example/page"},
           {"origin": "http://127.0.0.1:1"}, {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}]


def _signed_in(client: httpx.Client) -> bool:
    return client.get("/app/gradio_api/user").status_code == 200


def test_the_sign_in_form_needs_its_token_and_this_origin(site):
    with httpx.Client(base_url=site.url) as client:
        token = csrf_token(client.get("/login").text)
        form = {"username": "m-admin", "password": PASSWORD}
        assert client.post("/login", data=form).status_code == 403  # no token
        assert client.post("/login", data={**form, "csrf_token": "forged"}).status_code == 403
        for headers in FOREIGN:
            refused = client.post("/login", data={**form, "csrf_token": token}, headers=headers)
            assert refused.status_code == 403 and refused.json() == {"detail": "cross-site request refused"}
        assert not _signed_in(client)
        here = client.post("/login", data={**form, "csrf_token": token}, headers={"origin": site.url},
                           follow_redirects=False)
        assert here.status_code == 303 and _signed_in(client)


def test_signing_out_from_another_site_is_refused(site):
    with httpx.Client(base_url=site.url) as client:
        assert login(client, "m-admin").status_code == 303
        for headers in FOREIGN:
            refused = client.request("POST", "/logout", headers=headers, follow_redirects=False)
            assert refused.status_code == 403 and _signed_in(client), headers
        # A sign-out link followed from another site asks first (the form posts from this site).
        asked = client.get("/logout", headers={"sec-fetch-site": "cross-site"}, follow_redirects=False)
        assert asked.status_code == 403 and 'action="/logout"' in asked.text and _signed_in(client)
        out = client.post("/logout", headers={"origin": site.url, "sec-fetch-site": "same-origin"},
                          follow_redirects=False)
        assert out.status_code == 303 and not _signed_in(client)


def test_gradio_calls_from_another_site_are_refused(site, tmp_path):
    """Gradio 6 itself accepts a cross-origin queue/join (its CORS middleware only shapes response headers);
    the guard refuses every state-changing /app request whose Origin or Referer is another host."""
    index = _fn(site, "CompareHandlers.populate")
    for headers in FOREIGN:
        result = call(site, "m-admin", index, [], headers=headers)
        assert result.get("status") == 403 and result["output"] == {"detail": "cross-site request refused"}
    assert call(site, "m-admin", index, [], headers={"origin": site.url})["success"]
    with httpx.Client(base_url=site.url, cookies=site.cookies["m-admin"]) as client:
        files = {"files": ("a.png", b"x" * 10)}
        assert client.post("/app/gradio_api/upload", files=files, headers=FOREIGN[0]).status_code == 403
        assert client.post("/app/gradio_api/upload", files=files, headers={"origin": site.url}).status_code == 200
        # Reading stays open to the signed-in user's own pages (GET carries no Origin check).
        assert client.get("/app/config", headers={"sec-fetch-site": "same-origin"}).status_code == 200


# --- login rate limits ----------------------------------------------------------------------------------------

def test_failed_sign_ins_are_limited_per_username_and_per_client_address(tmp_path):
    """Behind a proxy on this host (uvicorn trusts X-Forwarded-For from 127.0.0.1), each client address
    counts on its own; the username counts across addresses."""
    app, services = _app(tmp_path, {"alice": ("reviewer",), "bob": ("reviewer",)})
    try:
        with running_server(app) as url:
            def attempt(username: str, password: str, address: str) -> int:
                with httpx.Client(base_url=url, headers={"x-forwarded-for": address}) as client:
                    return login(client, username, password).status_code

            assert [attempt("alice", "wrong guess", f"10.1.0.{i}") for i in range(5)] == [401] * 5
            assert attempt("alice", PASSWORD, "10.1.0.99") == 429  # the username is locked from anywhere
            assert attempt("bob", PASSWORD, "10.1.0.99") == 303
            assert [attempt(f"nobody{i}", "wrong guess", "10.2.0.1") for i in range(5)] == [401] * 5
            assert attempt("bob", PASSWORD, "10.2.0.1") == 429  # this address is locked for every username
            assert attempt("bob", PASSWORD, "10.2.0.2") == 303  # another address is not
    finally:
        services.close()


def _app(tmp_path, users, **settings):
    from tests.web_helpers import make_app
    return make_app(tmp_path / "data", users, **settings)


# --- cookies behind HTTPS -----------------------------------------------------------------------------------

def test_the_session_cookie_behind_an_https_proxy(tmp_path):
    app, services = _app(tmp_path, {"alice": ("reviewer",)}, cookie_secure=True, session_max_age_s=3600)
    proxy = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}
    try:
        with running_server(app) as url, httpx.Client(base_url=url, headers=proxy) as client:
            page = client.get("/login")
            # httpx keeps Secure cookies for https URLs only; the browser behind the proxy would send them back.
            form_cookie = page.headers["set-cookie"].split(";")[0]
            assert "secure" in page.headers["set-cookie"].lower()
            response = client.post("/login", follow_redirects=False, headers={"cookie": form_cookie}, data={
                "username": "alice", "password": PASSWORD, "csrf_token": csrf_token(page.text)})
            assert response.status_code == 303
            header = next(v for k, v in response.headers.multi_items()
                          if k == "set-cookie" and v.startswith(f"{SESSION_COOKIE}="))
            flags = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
            assert {"secure", "httponly", "samesite", "max-age", "path"} <= set(flags), header
            assert flags["samesite"].lower() in ("samesite=lax", "samesite=strict")
            assert flags["max-age"] == "Max-Age=3600" and flags["path"] == "path=/"
            cookie = header.split(";")[0]
            signed_in = client.get("/app/gradio_api/user", headers={"cookie": cookie})
            assert signed_in.status_code == 200 and signed_in.json() == "alice"
            # Behind the proxy the app sees https (uvicorn's proxy headers) and the client's real address.
            with services.db.session_scope() as session:
                from db.schema import AuditEvent
                event = session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.login"))
                assert event.payload["address"] == "203.0.113.7"
    finally:
        services.close()


def test_without_secure_cookies_the_flag_is_absent_but_the_rest_holds(tmp_path):
    app, services = _app(tmp_path, {"alice": ("reviewer",)})
    try:
        with running_server(app) as url, httpx.Client(base_url=url) as client:
            header = login(client, "alice").headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=lax" in header and "max-age=43200" in header
        assert "; secure" not in header
    finally:
        services.close()
