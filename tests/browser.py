"""Start the real app and drive it with headless Chromium: shared by the browser tests and bench/compare.py.

The app runs as ``python -m app serve --demo`` in a subprocess with its own data folder; users are created in
that folder's database before it starts. Chromium is Debian's (/usr/bin/chromium) through Python Playwright;
``playwright install`` is never used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PASSWORD = "compare-e2e-password"
ARTIFACTS = ROOT / "test-artifacts"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (make installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed"
    return None


def require_browser() -> None:
    """Skip the calling test when the browser is missing; under CI=true fail instead."""
    import pytest

    reason = browser_missing()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason}; with CI=true the browser tests must run")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_users(data_dir: Path, users: dict[str, tuple[str, ...]]) -> None:
    """Migrate the data folder's database and create ``users`` (name -> roles) with PASSWORD."""
    from app.settings import Settings
    from db.engine import Database
    from db.migrate import upgrade
    from db.users import create_user, find_user

    database = Database.from_url(Settings(data_dir=data_dir).database_url)
    try:
        upgrade(database.engine)
        with database.session_scope() as session:
            for name, roles in users.items():
                if find_user(session, name) is None:
                    create_user(session, name, password=PASSWORD, roles=roles, by="test")
    finally:
        database.dispose()


@dataclass
class AppServer:
    """A running ``surgreview serve --demo`` process."""

    data_dir: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    started_s: float = field(default=0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_app(data_dir: Path, users: dict[str, tuple[str, ...]], *, timeout_s: float = 120.0) -> AppServer:
    """Create ``users``, start the app with the demo pack on a free port and wait until it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    create_users(data_dir, users)
    port = free_port()
    env = {**os.environ, "SURGREVIEW_DATA_DIR": str(data_dir), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    log_path = data_dir / "server.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--demo", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = AppServer(data_dir, port, process, log_path)
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                server.started_s = time.perf_counter() - started
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the app did not answer within {timeout_s:.0f} s:\n{server.log()}")


def launch_browser(playwright):  # noqa: ANN001, ANN201 - Playwright types
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def login(page, server: AppServer, username: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    """Sign in through the login form and wait for the app page."""
    page.goto(f"{server.url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(f"{server.url}/app/**", timeout=30_000)


def open_compare(page, server: AppServer) -> float:  # noqa: ANN001
    """Load the app page, open the Compare tab and wait until its model list is filled (interactive).
    Returns the seconds from the page request to that point."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    started = time.perf_counter()
    page.goto(f"{server.url}/app/")
    try:
        page.get_by_role("tab", name="Compare").click(timeout=30_000)
        page.locator("#compare-models input[type=checkbox]").first.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout as exc:
        refused = [line for line in server.log().splitlines() if " 401 " in line or " 403 " in line][-5:]
        raise AssertionError(f"the Compare tab did not become usable ({exc.message.splitlines()[0]}); "
                             f"refused requests in the server log: {refused or 'none'}") from None
    return time.perf_counter() - started


def choose_dropdown(page, elem_id: str, text: str) -> None:  # noqa: ANN001
    """Pick the option showing ``text`` in the Gradio dropdown ``elem_id``."""
    page.locator(f"#{elem_id} input").click()
    page.locator("ul[role=listbox] li", has_text=text).first.click()


def tick_models(page, names: list[str]) -> None:  # noqa: ANN001
    for name in names:
        page.locator("#compare-models label", has_text=name).first.click()


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def remove_data(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
