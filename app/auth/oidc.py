"""Hospital SSO with OpenID Connect (authorization-code flow with PKCE) through authlib's Starlette client.

``/login/sso`` sends the browser to the identity provider (state and nonce kept in the session);
``/auth/callback`` exchanges the code, and authlib verifies the ID token's signature (keys from the
provider's JWKS), issuer, audience, expiry and nonce. Only asymmetric signatures are accepted. The user is
found or created by (issuer, subject) with db.users.oidc_user; roles come from the configured claim.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from joserfc.errors import JoseError
from starlette.concurrency import run_in_threadpool

from app.auth.core import AuthContext, audit_auth, show_login, start_session
from app.auth.guard import safe_next
from app.settings import Settings
from db.errors import DomainError
from db.users import oidc_user

log = logging.getLogger("surgreview.auth.oidc")
NEXT_KEY = "sso_next"
SIGNING_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
SSO_FAILED = "Sign-in with hospital SSO failed; please try again or ask an administrator."


class SsoRefused(Exception):
    """The provider's answer cannot sign anyone in (no ID token, a weak algorithm, no subject)."""


def oidc_client(settings: Settings) -> Any:
    """authlib's client for the configured provider, or None when SSO is off (no issuer set)."""
    if not settings.oidc_issuer:
        return None
    oauth = OAuth()
    return oauth.register(
        "hospital", client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value() or None,
        server_metadata_url=f"{settings.oidc_issuer.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scope, "code_challenge_method": "S256"})


def _header_algorithm(id_token: str) -> str:
    segment = id_token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))).get("alg", "")


def roles_from_claims(settings: Settings, claims: dict[str, Any]) -> list[str] | None:
    """The roles the provider asserts (a list, or a space-separated string); None when admins assign roles."""
    if not settings.oidc_roles_claim:
        return None
    value = claims.get(settings.oidc_roles_claim)
    if isinstance(value, str):
        return value.split()
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


async def verified_claims(context: AuthContext, request: Request) -> dict[str, Any]:
    """The ID token's claims after authlib checked state, signature, issuer, audience, expiry and nonce."""
    settings = context.services.settings
    options = {"iss": {"essential": True, "values": [settings.oidc_issuer]}, "sub": {"essential": True}}
    token = await context.oidc.authorize_access_token(request, claims_options=options)
    claims = token.get("userinfo")
    if not claims or "id_token" not in token:
        raise SsoRefused("the provider sent no ID token")
    if _header_algorithm(token["id_token"]) not in SIGNING_ALGORITHMS:
        raise SsoRefused("the ID token is not signed with an asymmetric key")
    return dict(claims)


def _sign_in(context: AuthContext, claims: dict[str, Any]) -> tuple[int, str]:
    settings = context.services.settings
    name = claims.get(settings.oidc_username_claim) or claims.get("email") or claims["sub"]
    with context.services.db.session_scope() as session:
        user = oidc_user(session, settings.oidc_issuer, str(claims["sub"]), username=str(name),
                         roles=roles_from_claims(settings, claims), display_name=claims.get("name"))
        return user.id, user.username


def build_oidc_router(context: AuthContext) -> APIRouter:
    """``/login/sso`` and ``/auth/callback``; both answer 404 when SSO is not configured."""
    router = APIRouter()

    @router.get("/login/sso", include_in_schema=False)
    async def login_sso(request: Request, next: str = "") -> Response:
        if context.oidc is None:
            raise HTTPException(404)
        request.session[NEXT_KEY] = safe_next(next, context.default_next)
        return await context.oidc.authorize_redirect(request, str(request.url_for("auth_callback")))

    @router.get("/auth/callback", name="auth_callback", include_in_schema=False)
    async def auth_callback(request: Request) -> Response:
        if context.oidc is None:
            raise HTTPException(404)
        target = safe_next(request.session.get(NEXT_KEY), context.default_next)
        try:
            claims = await verified_claims(context, request)
            user_id, username = await run_in_threadpool(_sign_in, context, claims)
        except (AuthlibBaseError, JoseError, SsoRefused, httpx.HTTPError, ValueError, KeyError, DomainError) as exc:
            log.warning("SSO sign-in refused: %s: %s", type(exc).__name__, exc)
            await run_in_threadpool(audit_auth, context, "auth.login_failed", request, label="anonymous",
                                    method="sso", reason=type(exc).__name__)
            error = str(exc) if isinstance(exc, DomainError) else SSO_FAILED
            return show_login(context, request, next_path=target, error=error, status_code=401)
        await run_in_threadpool(audit_auth, context, "auth.login", request, user_id=user_id, label=username,
                                method="sso")
        start_session(request, user_id, username)
        return RedirectResponse(target, status_code=303)

    return router
