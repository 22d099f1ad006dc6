"""Local sign-in and sign-out: ``GET/POST /login`` and ``GET/POST /logout``."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.auth.core import AuthContext, audit_auth, client_address, csrf_valid, show_login, start_session
from app.auth.guard import CROSS_SITE, USER_ID, USERNAME, safe_next
from app.auth.pages import sign_out_page
from db.errors import DomainError
from db.schema import User
from db.users import PASSWORD_MAX, USERNAME_MAX, authenticate, canonical_username

WRONG_CREDENTIALS = "Wrong username or password."
EXPIRED_FORM = "The sign-in form expired or cookies are blocked; please try again."


def _rate_keys(request: Request, username: str) -> tuple[str, str]:
    try:
        name = canonical_username(username.strip())
    except DomainError:
        name = username[:USERNAME_MAX]
    return f"user:{name}", f"addr:{client_address(request)}"


def _sign_in(context: AuthContext, request: Request, username: str, password: str) -> tuple[int, str] | None:
    """(user id, username) when the credentials are right; audits success and failure either way."""
    user_id = name = None
    if len(password) <= PASSWORD_MAX:
        with context.services.db.session_scope() as session:
            user = authenticate(session, username, password)
            if user is not None:
                user_id, name = user.id, user.username
    if user_id is None:
        audit_auth(context, "auth.login_failed", request, label="anonymous", username=username[:USERNAME_MAX],
                   method="password")
        return None
    audit_auth(context, "auth.login", request, user_id=user_id, label=name, method="password")
    return user_id, name


def build_router(context: AuthContext) -> APIRouter:
    """The routes of local sign-in and sign-out, bound to ``context``."""
    router = APIRouter()

    @router.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "") -> Response:
        return show_login(context, request, next_path=safe_next(next, context.default_next))

    @router.post("/login", include_in_schema=False)
    def login_submit(request: Request, username: Annotated[str, Form()] = "",
                     password: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = "",
                     next: Annotated[str, Form()] = "") -> Response:
        target = safe_next(next, context.default_next)
        if not csrf_valid(context, request, csrf_token):
            return show_login(context, request, next_path=target, error=EXPIRED_FORM, status_code=403)
        keys = _rate_keys(request, username)
        wait = context.limiter.retry_after(*keys)
        if wait:
            audit_auth(context, "auth.login_throttled", request, label="anonymous",
                       username=username[:USERNAME_MAX])
            error = f"Too many failed sign-ins. Try again in {math.ceil(wait / 60)} minute(s)."
            return show_login(context, request, next_path=target, error=error, username=username,
                              status_code=429)
        signed_in = _sign_in(context, request, username, password)
        if signed_in is None:
            context.limiter.fail(*keys)
            return show_login(context, request, next_path=target, error=WRONG_CREDENTIALS, username=username,
                              status_code=401)
        context.limiter.reset(keys[0])
        start_session(request, *signed_in)
        return RedirectResponse(target, status_code=303)

    @router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
    def logout(request: Request) -> Response:
        # A POST from another site never gets here (the guard refuses it); a link followed from another site
        # (SameSite=Lax sends the cookie with it) asks first instead of signing out.
        if request.method == "GET" and request.headers.get("sec-fetch-site") in CROSS_SITE:
            return sign_out_page()
        user_id = request.session.get(USER_ID)
        if isinstance(user_id, int):
            with context.services.db.session_scope() as session:
                known = session.get(User, user_id) is not None
            if known:
                audit_auth(context, "auth.logout", request, user_id=user_id, label=request.session.get(USERNAME))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    return router
