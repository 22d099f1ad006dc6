"""The guard in front of every route: no signed-in, active user, no data.

A pure ASGI middleware that runs inside Starlette's SessionMiddleware (it reads ``scope["session"]``).
Only the sign-in pages and the health check are open. For every other request it checks the session's
user against the database (so disabling a user ends their sessions at once) and the sign-in's age.
Refused browsers asking for a page are sent to ``/login?next=...``; anything else gets a bare 401.

Before any of that, a state-changing request (any method but GET, HEAD and OPTIONS, the sign-in form and
Gradio's queue included) and any websocket must come from this site: when the browser names where the
request comes from (``Origin``, else ``Referer``, else ``Sec-Fetch-Site``), that must be this host (the
``Host`` header: a proxy must pass the browser's, e.g. nginx ``proxy_set_header Host $host``). A cross-site
request gets 403 ``{"detail": "cross-site request refused"}``. Requests that name no origin at all (scripts,
the command line) pass: browsers always send one with a cross-site POST. This backs up the SameSite=Lax
cookie, which a page on a sibling subdomain gets past.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import anyio.to_thread
from sqlalchemy.exc import OperationalError

from app.errors import as_domain_error

OPEN_PATHS = frozenset({"/login", "/login/sso", "/auth/callback", "/logout", "/healthz"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_SITE = frozenset({"cross-site", "same-site"})  # Sec-Fetch-Site values of another origin
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SCOPE_USER = "surgreview.user"  # the verified username, for Gradio's auth_dependency
USER_ID, USERNAME, LOGIN_AT = "uid", "username", "login_at"
DEFAULT_NEXT = "/app/"
Scope = dict[str, Any]
ActiveUsername = Callable[[int], str | None]


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """``target`` when it is a path on this site (never another host, never the sign-in pages), else default."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in OPEN_PATHS:
        return default
    return target


def session_user_id(session: dict[str, Any], max_age_s: int, now: float) -> int | None:
    """The user id of a signed-in session younger than ``max_age_s``, else None."""
    user_id, login_at = session.get(USER_ID), session.get(LOGIN_AT)
    if not isinstance(user_id, int) or not isinstance(login_at, int | float):
        return None
    if not login_at - 60 <= now <= login_at + max_age_s:  # a minute of clock skew between app processes
        return None
    return user_id


class SessionGuard:
    """ASGI middleware: pass requests of active signed-in users (setting ``scope[SCOPE_USER]``), refuse others.

    ``active_username(user_id)`` returns the username of an active user or None; it runs in a worker
    thread because it queries the database.
    """

    def __init__(self, app: Any, *, active_username: ActiveUsername, max_age_s: int) -> None:
        self.app, self.active_username, self.max_age_s = app, active_username, max_age_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope.pop(SCOPE_USER, None)  # only this middleware may set it
        if (scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS) and not same_site(scope):
            await _refuse_cross_site(scope, send)
            return
        if scope["type"] == "http" and scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            username = await self._signed_in(scope)
        except OperationalError as exc:  # the database is away: say so, keep the session for the retry
            await _unavailable(scope, send, str(as_domain_error(exc)))
            return
        if username is None:
            await _refuse(scope, receive, send)
            return
        scope[SCOPE_USER] = username
        await self.app(scope, receive, send)

    async def _signed_in(self, scope: Scope) -> str | None:
        if "session" not in scope:
            raise RuntimeError("SessionGuard must run inside SessionMiddleware")
        session = scope["session"]
        user_id = session_user_id(session, self.max_age_s, time.time())
        username = None if user_id is None else await anyio.to_thread.run_sync(self.active_username, user_id)
        if username is None or username != session.get(USERNAME):
            if USER_ID in session:
                session.clear()  # the cookie is dropped with this response
            return None
        return username


def _host_port(netloc: str, default_port: int | None) -> tuple[str, int | None] | None:
    """(lower-case host, port) of ``host[:port]``, the port defaulted; None when it is not a host."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port or default_port) if parts.hostname else None


def same_site(scope: Scope) -> bool:
    """False when the browser says the request comes from another origin than this host (see the module
    docstring); True when it comes from here or names no origin."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    source = headers.get("origin") or headers.get("referer")
    if source is None:
        return headers.get("sec-fetch-site") not in CROSS_SITE
    parts = urlsplit(source.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:  # "null" (sandboxed frames, file:), garbage
        return False
    default = DEFAULT_PORTS[parts.scheme]
    origin = _host_port(parts.netloc, default)
    # Only Host counts: X-Forwarded-Host is a header a cross-site page may set once a CORS preflight passes.
    host = headers.get("host")
    return origin is not None and host is not None and _host_port(host.strip(), default) == origin


async def _unavailable(scope: Scope, send: Any, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), (b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": body})


async def _refuse_cross_site(scope: Scope, send: Any) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": "cross-site request refused"}).encode()
    await send({"type": "http.response.start", "status": 403, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


def _wants_page(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept", b"").decode("latin-1")
    return scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and "text/html" in accept


async def _refuse(scope: Scope, receive: Any, send: Any) -> None:
    """A 303 to the sign-in page for browsers asking for a page; a 401 without data for everything else."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    if _wants_page(scope):
        query = scope.get("query_string", b"").decode("latin-1")
        target = safe_next(scope["path"] + (f"?{query}" if query else ""))
        status, body = 303, b""
        headers = [(b"location", f"/login?next={quote(target, safe='')}".encode("latin-1"))]
    else:
        status, body = 401, json.dumps({"detail": "login required"}).encode()
        headers = [(b"content-type", b"application/json")]
    headers += [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
