"""A real Label Studio server for the sync tests, in a virtual environment of its own.

Label Studio's pins differ from the app's, so it never shares our environment: it is installed with
``python3 -m venv`` + pip into ``.cache/labelstudio/<version>/venv`` (about 90 s, once; later runs reuse it),
started on a free 127.0.0.1 port with legacy token auth, polled on ``/health`` and stopped at the end by
terminating its whole process group. The first start migrates an empty database (~53 s); the migrated data
folder is then kept as a template, so later runs copy it and start in a few seconds.

Without CI, a machine that cannot install Label Studio skips the tests that need it, with the reason; with
CI=true they must run and fail instead. Never run ``label-studio --version``: it starts a server on
0.0.0.0:8080.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

LABEL_STUDIO_VERSION = "1.23.2"
CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "labelstudio" / LABEL_STUDIO_VERSION
ADMIN_EMAIL = "admin@surgreview.test"
ADMIN_PASSWORD = "surgreview-test-password"
# The legacy API token the server gives its admin (sent as "Token <key>").
ADMIN_TOKEN = "5f1c0d7e9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d"
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 240
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_MARKER = ".surgreview-complete"
# Runs label_studio.server's entry point without the console script, whose shebang pins the venv's path.
_LAUNCH = "import sys; from label_studio.server import main; sys.argv[0] = 'label-studio'; sys.exit(main())"


class LabelStudioUnavailable(RuntimeError):
    """Label Studio could not be installed or started here."""


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str
    data_dir: Path
    log: Path
    pid: int  # the leader of the server's process group

    def __iter__(self):  # so a test can write ``url, token = server``
        return iter((self.url, self.token))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock, so two test runs never build the same venv or template at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def venv_python(cache_dir: Path = CACHE_DIR) -> Path:
    """The Python of Label Studio's own venv, installing it first when it is not complete."""
    venv = cache_dir / "venv"
    python = venv / "bin" / "python"
    if (venv / _MARKER).is_file():
        return python
    with _locked(cache_dir / "install.lock"):
        if (venv / _MARKER).is_file():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-built venv from an interrupted run
        log = cache_dir / "install.log"
        with log.open("w") as out:
            for command in (
                [sys.executable, "-m", "venv", str(venv)],
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    f"label-studio=={LABEL_STUDIO_VERSION}",
                ],
            ):
                try:
                    subprocess.run(
                        command, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=INSTALL_TIMEOUT_S
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    raise LabelStudioUnavailable(
                        f"installing label-studio=={LABEL_STUDIO_VERSION} failed ({exc}); see {log}"
                    ) from exc
        (venv / _MARKER).write_text(LABEL_STUDIO_VERSION + "\n")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment for a non-interactive start: admin account, legacy token, no phoning home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
            "LABEL_STUDIO_PASSWORD": ADMIN_PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": ADMIN_TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LabelStudioUnavailable(
                f"Label Studio exited with {process.returncode} while starting; last log lines:\n{_tail(log)}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise LabelStudioUnavailable(
        f"Label Studio did not answer /health within {timeout_s:.0f} s; last log lines:\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server's whole process group (it runs workers), then kill what is left."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:  # children that outlived the leader are still in its group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=10)


@contextmanager
def running_server(python: Path, data_dir: Path, log: Path) -> Iterator[LabelStudioServer]:
    """Label Studio on a free 127.0.0.1 port with ``data_dir``, stopped (group and all) on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(python),
        "-c",
        _LAUNCH,
        "start",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--host",
        url,
        "--no-browser",
        "--data-dir",
        str(data_dir),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=server_env(data_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=data_dir,
            start_new_session=True,
        )
    try:
        _wait_healthy(url, process, log, START_TIMEOUT_S)
        yield LabelStudioServer(url, ADMIN_TOKEN, data_dir, log, process.pid)
    finally:
        _stop(process)


def prepared_data_dir(python: Path, target: Path, cache_dir: Path = CACHE_DIR) -> None:
    """Fill ``target`` with a migrated Label Studio data folder (the cached template, made when missing)."""
    template = cache_dir / "data-template"
    with _locked(cache_dir / "template.lock"):
        if not (template / _MARKER).is_file():
            shutil.rmtree(template, ignore_errors=True)
            template.mkdir(parents=True)
            # Start once to migrate and create the admin, stop cleanly, and keep the result.
            with running_server(python, template, cache_dir / "template.log"):
                pass
            (template / _MARKER).write_text(LABEL_STUDIO_VERSION + "\n")
        shutil.copytree(template, target, ignore=shutil.ignore_patterns(_MARKER), dirs_exist_ok=True)


@contextmanager
def label_studio(work_dir: Path) -> Iterator[LabelStudioServer]:
    """A running Label Studio with a fresh copy of the migrated data folder under ``work_dir``."""
    python = venv_python()
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    prepared_data_dir(python, data_dir)
    with running_server(python, data_dir, work_dir / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """(url, token) of a Label Studio server for the whole test session; skipped (failed under CI=true)
    when it cannot be installed or started here."""
    try:
        with label_studio(tmp_path_factory.mktemp("labelstudio")) as server:
            yield server
            return
    except LabelStudioUnavailable as exc:
        unavailable(str(exc))


def unavailable(reason: str) -> None:
    """Skip the test that needs Label Studio, or fail it under CI=true, where nothing may skip."""
    if IN_CI:
        pytest.fail(f"{reason}; with CI=true the Label Studio tests must run")
    pytest.skip(reason)
