"""What the sign-in routes share: settings and services, the CSRF signer, the failure limiter, the
session's contents after sign-in, and the audit of sign-in events."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from itsdangerous import BadData, URLSafeTimedSerializer

from app.auth.guard import DEFAULT_NEXT, LOGIN_AT, USER_ID, USERNAME
from app.auth.pages import login_page
from app.auth.ratelimit import FailureLimiter
from app.services import Services
from db.audit import record

CSRF_KEY = "csrf"
CSRF_MAX_AGE_S = 3600


@dataclass
class AuthContext:
    """Everything the sign-in routes need, built once by ``install``."""

    services: Services
    csrf_signer: URLSafeTimedSerializer
    limiter: FailureLimiter
    oidc: Any = None  # authlib's StarletteOAuth2App when hospital SSO is configured
    default_next: str = DEFAULT_NEXT


def csrf_token(context: AuthContext, request: Request) -> str:
    """A signed form token bound to this browser's session (the session gets a random value if it has none)."""
    value = request.session.get(CSRF_KEY)
    if not isinstance(value, str):
        value = request.session[CSRF_KEY] = secrets.token_urlsafe(24)
    return context.csrf_signer.dumps(value)


def csrf_valid(context: AuthContext, request: Request, token: str) -> bool:
    """True when ``token`` was signed by us, is under an hour old and belongs to this session."""
    expected = request.session.get(CSRF_KEY)
    try:
        value = context.csrf_signer.loads(token, max_age=CSRF_MAX_AGE_S)
    except BadData:
        return False
    return isinstance(expected, str) and isinstance(value, str) and hmac.compare_digest(value, expected)


def show_login(context: AuthContext, request: Request, *, next_path: str, error: str = "", username: str = "",
               status_code: int = 200) -> HTMLResponse:
    """The sign-in page with a fresh CSRF token for this session."""
    return login_page(csrf_token=csrf_token(context, request), next_path=next_path, error=error,
                      username=username, sso=context.oidc is not None, status_code=status_code)


def start_session(request: Request, user_id: int, username: str) -> None:
    """A new session for a signed-in user: everything from before sign-in is dropped (no fixation)."""
    request.session.clear()
    request.session.update({USER_ID: user_id, USERNAME: username, LOGIN_AT: int(time.time())})


def client_address(request: Request) -> str:
    """The client's address as the server sees it (behind a proxy: what uvicorn's proxy headers allow)."""
    return request.client.host if request.client else "unknown"


def audit_auth(context: AuthContext, action: str, request: Request, *, user_id: int | None = None,
               label: str | None = None, **payload: Any) -> None:
    """Record a sign-in event in its own transaction (it must survive a refused sign-in)."""
    with context.services.db.session_scope() as session:
        record(session, action, actor_id=user_id, actor_label=label, entity_type="user", entity_id=user_id,
               payload={"address": client_address(request), **payload})
