"""Sign-in over HTTP as a browser does it: the form, CSRF, signed session cookies, expiry, sign-out, disabled
users, open redirects, failed-sign-in limits, cookie flags and the audit log. No browser needed."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.auth import SESSION_COOKIE
from app.auth.guard import safe_next
from db.schema import AuditEvent
from db.users import disable
from tests.web_helpers import PASSWORD, csrf_token, login, make_app

HTML = {"accept": "text/html,application/xhtml+xml"}
USERS = {"alice": ("reviewer",), "root": ("admin",)}


@pytest.fixture
def web(tmp_path):
    app, services = make_app(tmp_path / "data", USERS)
    with TestClient(app, follow_redirects=False) as client:
        yield client, services
    services.close()


def _signed_in(client) -> bool:
    response = client.get("/app/gradio_api/user")
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _actions(services) -> list[AuditEvent]:
    with services.db.session_scope() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action.like("auth.%"))
                                    .order_by(AuditEvent.id)))


def _cookie_payload(cookie: str) -> dict:
    data = cookie.split(".", 1)[0]
    return json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))


def test_the_sign_in_page_is_a_plain_form(web):
    client, _ = web
    page = client.get("/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="username" name="username"', 'id="password" name="password" type="password"',
                    'id="login" type="submit"', 'id="login-error"', 'name="csrf_token"'):
        assert element in page.text
    assert "<script" not in page.text and "src=" not in page.text and "/login/sso" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/login/sso").status_code == 404  # SSO is not configured


def test_signing_in_opens_the_app(web):
    client, services = web
    assert client.get("/app/", headers=HTML).status_code == 303
    response = login(client, "Alice", next_path="/app/?tab=review")
    assert response.status_code == 303 and response.headers["location"] == "/app/?tab=review"
    page = client.get("/app/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    assert client.get("/app/gradio_api/user").json() == "alice"
    assert client.get("/app/config").status_code == 200
    [event] = _actions(services)
    assert (event.action, event.actor_label, event.payload["method"]) == ("auth.login", "alice", "password")


def test_a_wrong_password_is_refused_and_audited_without_the_password(web):
    client, services = web
    response = login(client, "alice", "wrong password")
    assert response.status_code == 401
    assert 'id="login-error" role="alert">Wrong username or password.<' in response.text
    assert not _signed_in(client)
    [event] = _actions(services)
    assert event.action == "auth.login_failed" and event.payload["username"] == "alice"
    assert "wrong password" not in json.dumps(event.payload)


def test_what_the_user_typed_is_escaped_on_the_page(web):
    client, _ = web
    response = login(client, '<script>alert("x")</script>', "whatever1")
    assert response.status_code == 401
    assert "<script>alert" not in response.text and "&lt;script&gt;alert(&quot;x&quot;)" in response.text


def test_a_post_without_a_valid_csrf_token_is_refused(web):
    client, services = web
    client.get("/login")
    for token in ("", "forged", None):
        data = {"username": "alice", "password": PASSWORD}
        if token is not None:
            data["csrf_token"] = token
        response = client.post("/login", data=data)
        assert response.status_code == 403 and "expired" in response.text
    assert not _signed_in(client) and _actions(services) == []


def test_a_csrf_token_of_another_browser_is_refused(web):
    client, _ = web
    other = TestClient(client.app, follow_redirects=False)
    token = csrf_token(other.get("/login").text)
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 403 and not _signed_in(client)


def test_the_session_cookie_is_signed(web, tmp_path):
    client, _ = web
    login(client, "alice")
    cookie = client.cookies[SESSION_COOKIE]
    payload = _cookie_payload(cookie)
    assert set(payload) == {"uid", "username", "login_at"} and payload["username"] == "alice"
    _, rest = cookie.split(".", 1)
    root = {**payload, "uid": payload["uid"] + 1, "username": "root"}
    tampered = base64.b64encode(json.dumps(root).encode()).decode() + "." + rest
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, tampered)
    assert not _signed_in(client)
    encoded = base64.b64encode(json.dumps(root).encode())
    key = (tmp_path / "data" / "secret_key").read_text().strip()
    for signer, accepted in ((TimestampSigner("not the key"), False), (TimestampSigner(key), True)):
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, signer.sign(encoded).decode())
        assert _signed_in(client) is accepted


def test_the_secret_key_file_is_private_and_kept(tmp_path):
    make_app(tmp_path / "data")
    key_file = tmp_path / "data" / "secret_key"
    key = key_file.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key.strip()) >= 32
    make_app(tmp_path / "data")
    assert key_file.read_text() == key


def test_a_configured_secret_key_signs_the_cookies(tmp_path):
    key = "k" * 48
    app, _ = make_app(tmp_path / "data", USERS, secret_key=key)
    assert not (tmp_path / "data" / "secret_key").exists()
    with TestClient(app, follow_redirects=False) as client:
        login(client, "alice")
        assert TimestampSigner(key).unsign(client.cookies[SESSION_COOKIE])


def test_a_session_expires_after_max_age(tmp_path, monkeypatch):
    app, _ = make_app(tmp_path / "data", USERS, session_max_age_s=100)
    with TestClient(app, follow_redirects=False) as client:
        login(client, "alice")
        start = time.time()
        monkeypatch.setattr(time, "time", lambda: start + 60)
        assert client.get("/login").status_code == 200  # changes the session, so the cookie is signed anew
        assert _signed_in(client)
        monkeypatch.setattr(time, "time", lambda: start + 120)
        assert not _signed_in(client)  # a fresh cookie, but the sign-in is older than max_age


def test_an_idle_cookie_expires(web, monkeypatch):
    client, _ = web
    login(client, "alice")
    start = time.time()
    monkeypatch.setattr(time, "time", lambda: start + 43_200 + 5)
    assert not _signed_in(client)


def test_signing_out_ends_the_session(web):
    client, services = web
    login(client, "alice")
    assert _signed_in(client)
    response = client.get("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert not _signed_in(client)
    login(client, "alice")
    assert client.post("/logout").status_code == 303 and not _signed_in(client)
    assert [e.action for e in _actions(services)] == ["auth.login", "auth.logout", "auth.login", "auth.logout"]
    assert _actions(services)[1].actor_label == "alice"


def test_disabling_a_user_ends_their_open_session(web):
    client, services = web
    login(client, "alice")
    assert _signed_in(client)
    with services.db.session_scope() as session:
        disable(session, "alice")
    response = client.get("/app/config")
    assert response.status_code == 401 and response.json() == {"detail": "login required"}
    assert SESSION_COOKIE not in client.cookies  # the dead session's cookie is dropped
    assert login(client, "alice").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/x",
                                    "javascript:alert(1)", "evil.example", "/login", "/ok\r\nSet-Cookie: x=1"])
def test_next_never_leaves_the_site(web, target):
    client, _ = web
    assert login(client, "alice", next_path=target).headers["location"] == "/app/"
    assert 'name="next" value="/app/"' in client.get("/login", params={"next": target}).text


def test_the_guard_sends_browsers_to_sign_in_and_back(web):
    client, _ = web
    for path, expected in (("/", "/login?next=%2F"), ("/app/?x=1", "/login?next=%2Fapp%2F%3Fx%3D1"),
                           ("http://testserver//evil.example/", "/login?next=%2Fapp%2F")):
        response = client.get(path, headers=HTML)
        assert (response.status_code, response.headers["location"]) == (303, expected)
    api = client.get("/app/config", headers={"accept": "application/json"})
    assert api.status_code == 401 and api.json() == {"detail": "login required"}
    login(client, "alice")
    assert client.get("/").headers["location"] == "/app/"


@pytest.mark.parametrize("target,expected", [("/app/x?y=1", "/app/x?y=1"), ("/logout", "/app/"), ("", "/app/"),
                                             (None, "/app/"), ("/%2F%2Fevil", "/%2F%2Fevil")])
def test_safe_next(target, expected):
    assert safe_next(target) == expected


def test_repeated_failures_for_one_username_are_limited(tmp_path):
    app, services = make_app(tmp_path / "data", USERS)
    clients = [TestClient(app, follow_redirects=False, client=(f"10.0.0.{i}", 5000)) for i in range(7)]
    for client in clients[:5]:
        assert login(client, "alice", "wrong guess").status_code == 401
    blocked = login(clients[5], "ALICE", PASSWORD)  # even the right password, from a new address
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
    assert login(clients[6], "root").status_code == 303  # other users are not affected
    assert "auth.login_throttled" in [e.action for e in _actions(services)]
    limiter = app.state.auth.limiter
    now = time.monotonic()
    limiter.clock = lambda: now + 301
    assert login(clients[5], "alice").status_code == 303  # the window has passed


def test_repeated_failures_from_one_address_are_limited(web):
    client, _ = web
    for name in ("a1", "a2", "a3", "a4", "a5"):
        assert login(client, name, "wrong guess").status_code == 401
    assert login(client, "alice").status_code == 429


def test_a_successful_sign_in_resets_the_username_count(tmp_path):
    app, _ = make_app(tmp_path / "data", USERS)
    clients = [TestClient(app, follow_redirects=False, client=(f"10.0.1.{i}", 5000)) for i in range(10)]
    for client in clients[:4]:
        login(client, "alice", "wrong guess")
    assert login(clients[4], "alice").status_code == 303
    for client in clients[5:9]:
        login(client, "alice", "wrong guess")
    assert login(clients[9], "alice").status_code == 303


@pytest.mark.parametrize("secure", [True, False])
def test_cookie_flags(tmp_path, secure):
    app, _ = make_app(tmp_path / "data", USERS, cookie_secure=secure)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        header = login(client, "alice").headers["set-cookie"].lower()
    assert header.startswith(f"{SESSION_COOKIE}=") and "httponly" in header and "samesite=lax" in header
    assert ("; secure" in header) is secure
