"""Every route the app serves, found by walking the app itself (the mounted Gradio app included), asked
without a valid session: nothing may answer with data. New routes are crawled without touching this file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from db.users import disable
from tests.web_helpers import login, make_app, running_server

OPEN = {
    ("GET", "/login"): {200},
    ("HEAD", "/login"): {405},
    ("POST", "/login"): {403},  # no CSRF token
    ("GET", "/logout"): {303},
    ("POST", "/logout"): {303},
    ("GET", "/healthz"): {200},
    ("GET", "/login/sso"): {404},  # SSO not configured here (tests/test_oidc.py covers it)
    ("GET", "/auth/callback"): {404},
}
# The routes NOTES.md found left open by Gradio's auth_dependency, and the ones it does protect.
MUST_BE_CRAWLED = ["/app/gradio_api/heartbeat/{session_hash}", "/app/gradio_api/cancel", "/app/gradio_api/reset",
                   "/app/gradio_api/user", "/app/gradio_api/token", "/app/gradio_api/app_id",
                   "/app/gradio_api/startup-events", "/app/openapi.json", "/app/config",
                   "/app/gradio_api/queue/join", "/app/gradio_api/upload", "/app/gradio_api/file={path_or_url:path}",
                   "/app/gradio_api/queue/data", "/app/assets/{path:path}", "/app/", "/app", "/", "/healthz"]
PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
SAMPLE = {"path": "x/index.js", "int": "1", "float": "1.0", "uuid": "00000000-0000-0000-0000-000000000000"}


def crawl(routes, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) of every route under ``routes``, mounts walked recursively."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, Mount):
            yield "GET", prefix + route.path  # the mount's own root
            yield from crawl(route.routes, prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield "WEBSOCKET", prefix + route.path
        else:
            for method in sorted(context.methods or {"GET"}):
                yield method, prefix + context.path
            yield "OPTIONS", prefix + context.path


def concrete(template: str) -> str:
    """The template with each path parameter replaced by a harmless sample of its type."""
    return PARAM.sub(lambda m: SAMPLE.get(m.group(2) or "", "x"), template)


@pytest.fixture(scope="module")
def app_and_services(tmp_path_factory):
    app, services = make_app(tmp_path_factory.mktemp("crawl") / "data", {"gone": ("admin",)})
    yield app, services
    services.close()


@pytest.fixture(scope="module")
def routes(app_and_services) -> list[tuple[str, str]]:
    return sorted(set(crawl(app_and_services[0].routes)))


def test_the_crawl_finds_every_route_worth_worrying_about(routes):
    templates = {path for _, path in routes}
    missing = [path for path in MUST_BE_CRAWLED if path not in templates]
    assert not missing, f"the crawl did not find {missing}"
    assert len(routes) > 80


def _visitors(base_url: str) -> dict[str, dict[str, str]]:
    """Cookies of: nobody; a browser that only opened the sign-in page; a user disabled after signing in."""
    with httpx.Client(base_url=base_url) as client:
        client.get("/login")
        anonymous = dict(client.cookies)
    with httpx.Client(base_url=base_url) as client:
        assert login(client, "gone").status_code == 303
        disabled = dict(client.cookies)
    return {"no cookie": {}, "anonymous session": anonymous, "disabled user": disabled}


def _check(method: str, template: str, response: httpx.Response) -> str | None:
    """Why this answer leaks or misbehaves, or None when it is fine. Bodies are read only for answers that
    should be short, so a leaking stream (Gradio's queue) fails the test instead of hanging it."""
    status = response.status_code
    if (method, template) in OPEN:
        return None if status in OPEN[(method, template)] else f"open route said {status}"
    if status == 401:
        body = response.read()
        body_ok = json.loads(body) == {"detail": "login required"} if method != "HEAD" else not body
        return None if body_ok else f"401 with body {body[:200]!r}"
    if status in (403, 404, 405):
        body = response.read()
        return None if len(body) < 200 else f"{status} with a body of {len(body)} bytes"
    if status in (301, 302, 303, 307, 308):
        location = response.headers.get("location", "")
        ok = location.startswith("/login?next=") and not response.read()
        return None if ok else f"redirect to {location!r}"
    return f"answered {status} ({response.headers.get('content-type')})"


def _websocket_refused(app, url: str) -> bool:
    with TestClient(app) as client:
        try:
            client.websocket_connect(url).__enter__()
        except WebSocketDisconnect:
            return True
    return False


def test_no_route_answers_without_a_valid_session(app_and_services, routes):
    app, services = app_and_services
    problems = []
    with running_server(app) as base_url:
        visitors = _visitors(base_url)
        with services.db.session_scope() as session:
            disable(session, "gone")
        for visitor, cookies in visitors.items():
            with httpx.Client(base_url=base_url, cookies=cookies, timeout=10) as client:
                for method, template in routes:
                    url = concrete(template)
                    if method == "WEBSOCKET":
                        if not _websocket_refused(app, url):
                            problems.append(f"{visitor}: websocket {url} accepted")
                        continue
                    for accept in ("text/html", "application/json"):
                        with client.stream(method, url, headers={"accept": accept}) as response:
                            problem = _check(method, template, response)
                        if problem:
                            problems.append(f"{visitor}: {method} {url} ({accept}): {problem}")
    assert not problems, "\n".join(problems)


def test_open_routes_carry_no_data(app_and_services):
    app, _ = app_and_services
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/logout").headers["location"] == "/login"
        page = client.get("/login").text
        assert "gone" not in page and "admin" not in page


def test_an_upload_over_the_image_size_limit_is_refused_before_it_is_stored(tmp_path):
    """Gradio's upload route enforces the frame store's byte limit for signed-in users too."""
    app, services = make_app(tmp_path / "data", {"uploader": ("admin",)}, max_image_bytes=1000)
    try:
        with running_server(app) as base_url, httpx.Client(base_url=base_url) as client:
            assert login(client, "uploader").status_code == 303
            small = client.post("/app/gradio_api/upload", files={"files": ("a.png", b"x" * 500)})
            large = client.post("/app/gradio_api/upload", files={"files": ("b.png", b"x" * 5000)})
        assert small.status_code == 200 and len(small.json()) == 1
        assert large.status_code == 413, large.text
    finally:
        services.close()
