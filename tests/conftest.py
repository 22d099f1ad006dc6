"""Shared fixtures: real SQLite and real PostgreSQL databases, migrated once per session; each test runs
inside a transaction that is rolled back; a frame store in a temporary folder; synthetic images."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.engine import make_engine
from db.frames import FrameStore
from db.migrate import upgrade

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

POSTGRES_URL = os.environ.get("SURGREVIEW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _postgres_or_skip() -> str:
    """The admin URL of a reachable PostgreSQL; skip (or fail under CI=true) when there is none."""
    try:
        with create_engine(POSTGRES_URL).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        reason = f"PostgreSQL not reachable at {POSTGRES_URL} ({exc.__class__.__name__})"
        if IN_CI:
            pytest.fail(f"{reason}; with CI=true PostgreSQL tests must run")
        pytest.skip(reason)
    return POSTGRES_URL


def create_postgres_database() -> tuple[str, callable]:
    """A new empty database on the test server: (url, drop)."""
    admin_url = _postgres_or_skip()
    name = f"surgreview_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    url, drop = create_postgres_database()
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()
    drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose every commit is a savepoint of one outer transaction rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def store(tmp_path: Path) -> FrameStore:
    return FrameStore(tmp_path / "frames", thumbnail_size=64, max_pixels=20_000_000, max_bytes=8 * 1024 * 1024)


def make_image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG", seed: int = 0) -> bytes:
    """A small distinct image: the seed changes the colour, so different seeds hash differently."""
    image = Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53 + 80) % 256))
    image.putpixel((seed % width, (seed // width) % height), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@pytest.fixture
def image_bytes() -> callable:
    return make_image_bytes


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright, for one test module at a time: Playwright's sync API
    keeps an event loop running while it is open, which would break later tests that call asyncio.run.
    (tests/browser.py says when Chromium is missing: a skip with the reason, or a failure under CI=true.)"""
    from tests.browser import launch_browser, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) with a desktop-sized page, closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()
