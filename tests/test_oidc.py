"""Hospital SSO through the real authorization-code flow: the app (TestClient) talks to a small real OpenID
provider on 127.0.0.1 (tests/fake_oidc_provider.py); the browser's redirects are followed by hand."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import RSAKey
from sqlalchemy import select

from db.schema import AuditEvent, User
from tests.fake_oidc_provider import FakeProvider, running_provider
from tests.web_helpers import make_app


@pytest.fixture
def provider():
    with running_provider(client_id="surgreview", client_secret="provider-secret") as running:
        yield running


def _app(tmp_path, provider: FakeProvider, **settings):
    return make_app(tmp_path / "data", {"dr.jane": ("admin",)}, oidc_issuer=provider.url,
                    oidc_client_id=provider.client_id, oidc_client_secret=provider.client_secret, **settings)


@pytest.fixture
def web(tmp_path, provider):
    app, services = _app(tmp_path, provider)
    with TestClient(app, follow_redirects=False) as client:
        yield client, services
    services.close()


def sso_sign_in(client: TestClient, next_path: str = "/app/") -> httpx.Response:
    """The browser's part: the app sends it to the provider, which sends it back with a code."""
    start = client.get("/login/sso", params={"next": next_path})
    assert start.status_code == 302, start.text
    approved = httpx.get(start.headers["location"], follow_redirects=False)
    assert approved.status_code == 302, approved.text
    return client.get(approved.headers["location"])


def _user(services, subject: str) -> User | None:
    with services.db.session_scope() as session:
        user = session.scalar(select(User).where(User.oidc_subject == subject))
        if user is not None:
            user.role_names  # noqa: B018 - load the roles before the session closes
        return user


def _auth_events(services) -> list[AuditEvent]:
    with services.db.session_scope() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action.like("auth.%"))))


def test_the_sign_in_page_offers_sso(web):
    client, _ = web
    assert 'href="/login/sso?next=%2Fapp%2F"' in client.get("/login").text


def test_an_sso_sign_in_creates_the_user_with_the_claimed_roles(web, provider):
    client, services = web
    provider.behaviour.roles = ["reviewer", "approver", "superuser"]
    done = sso_sign_in(client, "/app/?tab=review")
    assert done.status_code == 303 and done.headers["location"] == "/app/?tab=review"
    user = _user(services, "sub-0001")
    assert user.oidc_issuer == provider.url and user.role_names == {"reviewer", "approver"}
    assert user.username == "dr.jane-2" and user.display_name == "Dr Jane Roe"  # the local dr.jane stays hers
    assert client.get("/app/gradio_api/user").json() == "dr.jane-2"
    assert client.get("/app/").status_code == 200
    [event] = _auth_events(services)
    assert (event.action, event.actor_id, event.payload["method"]) == ("auth.login", user.id, "sso")
    assert provider.token_requests[0]["code_verifier"]  # PKCE


def test_roles_follow_the_claim_on_each_sign_in(web, provider):
    client, services = web
    sso_sign_in(client)
    assert _user(services, "sub-0001").role_names == {"reviewer"}
    client.get("/logout")
    provider.behaviour.roles = None  # the claim is missing: the provider grants nothing
    assert sso_sign_in(client).status_code == 303
    assert _user(services, "sub-0001").role_names == set()
    assert client.get("/app/gradio_api/user").status_code == 200  # signed in, but sees nothing


def test_without_a_roles_claim_setting_admins_assign_roles(tmp_path, provider):
    app, services = _app(tmp_path, provider, oidc_roles_claim="")
    provider.behaviour.roles = ["admin"]
    with TestClient(app, follow_redirects=False) as client:
        assert sso_sign_in(client).status_code == 303
    assert _user(services, "sub-0001").role_names == set()


@pytest.mark.parametrize("change", ["audience", "signature", "nonce", "issuer", "expired"])
def test_a_bad_id_token_is_refused(web, provider, change):
    client, services = web
    behaviour = provider.behaviour
    if change == "audience":
        behaviour.audience = "another-client"
    elif change == "signature":
        behaviour.sign_with = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
    elif change == "nonce":
        behaviour.nonce = "replayed-nonce"
    elif change == "issuer":
        behaviour.issuer = "https://evil.example"
    else:
        behaviour.lifetime_s = -600
    refused = sso_sign_in(client)
    assert refused.status_code == 401 and "Sign-in with hospital SSO failed" in refused.text
    assert _user(services, "sub-0001") is None
    assert client.get("/app/gradio_api/user").status_code == 401
    assert [e.action for e in _auth_events(services)] == ["auth.login_failed"]


def test_a_callback_for_another_browser_is_refused(web, provider):
    client, services = web
    start = client.get("/login/sso")
    approved = httpx.get(start.headers["location"], follow_redirects=False)
    with TestClient(client.app, follow_redirects=False) as victim:  # no state in this browser's session
        assert victim.get(approved.headers["location"]).status_code == 401
        assert victim.get("/app/gradio_api/user").status_code == 401
    assert _user(services, "sub-0001") is None


def test_a_disabled_sso_user_is_refused(web, provider):
    client, services = web
    sso_sign_in(client)
    client.get("/logout")
    with services.db.session_scope() as session:
        session.scalar(select(User).where(User.oidc_subject == "sub-0001")).is_active = False
    refused = sso_sign_in(client)
    assert refused.status_code == 401 and "disabled" in refused.text
    assert client.get("/app/gradio_api/user").status_code == 401
