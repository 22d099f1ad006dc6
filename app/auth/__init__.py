"""Sign-in for the whole web app: signed session cookies, a guard in front of every route, local accounts,
hospital SSO (OpenID Connect), and the bridge to Gradio (``gradio_user``, ``actor_for``).

    install(app, services, protected_prefix="/app")   # before mounting Gradio
    gr.mount_gradio_app(app, blocks, path="/app", auth_dependency=gradio_user)
"""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI, Request
from itsdangerous import URLSafeTimedSerializer
from starlette.middleware.sessions import SessionMiddleware

from app.auth.core import AuthContext
from app.auth.guard import SCOPE_USER, SessionGuard
from app.auth.oidc import build_oidc_router, oidc_client
from app.auth.ratelimit import FailureLimiter
from app.auth.routes import build_router
from app.local_secrets import session_secret
from app.services import Services
from db.errors import PermissionDenied
from db.schema import User
from db.users import Actor, actor, require

SESSION_COOKIE = "surgreview_session"

__all__ = ["SESSION_COOKIE", "actor_for", "gradio_user", "install"]


def _active_username(services: Services):
    def lookup(user_id: int) -> str | None:
        with services.db.read_scope() as session:  # every request: never queue behind a writer
            user = session.get(User, user_id)
            return user.username if user is not None and user.is_active else None
    return lookup


def install(app: FastAPI, services: Services, protected_prefix: str) -> AuthContext:
    """Add the sign-in routes, the guard and the session middleware to ``app``; ``protected_prefix`` is
    where users land after signing in. Returns the context (tests reach the rate limiter through it)."""
    settings = services.settings
    secret = session_secret(settings)
    context = AuthContext(services, URLSafeTimedSerializer(secret, salt="surgreview.login-csrf"),
                          FailureLimiter(settings.login_rate_limit, settings.login_rate_window_s),
                          oidc=oidc_client(settings), default_next=f"{protected_prefix.rstrip('/')}/")
    app.include_router(build_router(context))
    app.include_router(build_oidc_router(context))
    # Starlette runs the middleware added last outermost: the guard must see the decoded session.
    app.add_middleware(SessionGuard, active_username=_active_username(services),
                       max_age_s=settings.session_max_age_s)
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE,
                       max_age=settings.session_max_age_s, same_site="lax", https_only=settings.cookie_secure)
    app.state.auth = context
    return context


def gradio_user(request: Request) -> str | None:
    """Gradio's auth_dependency: the username the guard verified for this request, else None."""
    return request.scope.get(SCOPE_USER)


def actor_for(services: Services, request: gr.Request) -> Actor:
    """The Actor behind a Gradio event, loaded fresh from the database; PermissionDenied when the user is
    unknown or disabled."""
    username = getattr(request, "username", None)
    if not username:
        raise PermissionDenied("Please sign in again.")
    with services.db.session_scope() as session:
        return actor(session, username)


def tab_actor(services: Services, request: gr.Request, roles: frozenset[str]) -> Actor:
    """The Actor behind an event of a tab that ``roles`` may use; PermissionDenied for anyone else.
    Every tab handler starts here: hiding a tab is not a check."""
    found = actor_for(services, request)
    require(found, *sorted(roles))
    return found
