"""Helpers for tests of the web app over HTTP (no browser): build the app on a temporary SQLite data folder,
add users, sign in through the real form."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from app.main import build_app
from app.services import Services
from app.settings import Settings
from db.users import create_user

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_services(data_dir: Path, **settings: Any) -> Services:
    """Services on a fresh SQLite database in ``data_dir`` (migrated), with settings overridden."""
    return Services.from_settings(Settings(data_dir=data_dir, database_url="", **settings))


def make_app(data_dir: Path, users: dict[str, tuple[str, ...]] | None = None, **settings: Any):
    """(FastAPI app, services) with ``users`` {name: roles} created, all with PASSWORD."""
    services = make_services(data_dir, **settings)
    with services.db.session_scope() as session:
        for name, roles in (users or {}).items():
            create_user(session, name, password=PASSWORD, roles=roles)
    return build_app(services), services


def csrf_token(page_html: str) -> str:
    match = CSRF.search(page_html)
    assert match, "the sign-in page has no CSRF token"
    return match.group(1)


def login(client: Any, username: str, password: str = PASSWORD, *, next_path: str | None = None
          ) -> httpx.Response:
    """GET the form, POST it with its CSRF token; returns the POST's response (not followed)."""
    page = client.get("/login", follow_redirects=False)
    assert page.status_code == 200, page.text
    data = {"username": username, "password": password, "csrf_token": csrf_token(page.text)}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data, follow_redirects=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread (lifespan included); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
