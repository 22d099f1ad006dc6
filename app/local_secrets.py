"""Secrets kept in the data folder: the session-signing key and the demo accounts' password.

Each is generated once, written with mode 0600 and reused on later runs; two processes starting together
agree on one value.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from app.settings import Settings

log = logging.getLogger("surgreview.secrets")
SECRET_KEY_FILE = "secret_key"
DEMO_CREDENTIALS_FILE = "demo-credentials.txt"


def _read_or_create(path: Path, render: Callable[[], str]) -> str:
    """The text of ``path``; when it does not exist, write ``render()`` there with mode 0600 first.

    The file appears complete or not at all (written aside, then hard-linked into place), so a second
    process starting at the same moment reads the same value, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(render())
            os.link(aside, path)
        except FileExistsError:
            pass  # another process was first: use its value
        finally:
            aside.unlink()
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s was readable by others; restricting it to its owner", path)
        path.chmod(0o600)
    return path.read_text(encoding="utf-8")


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies: the configured one, else the one kept in <data_dir>/secret_key."""
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured
    key = _read_or_create(settings.data_dir / SECRET_KEY_FILE, lambda: secrets.token_urlsafe(48)).strip()
    if len(key) < 32:
        raise RuntimeError(f"{settings.data_dir / SECRET_KEY_FILE} holds too short a key; delete it to make one")
    return key


def demo_password(data_dir: Path, usernames: Sequence[str]) -> str:
    """The one password of the demo accounts, kept in <data_dir>/demo-credentials.txt (a TOML file)."""
    def render() -> str:
        names = ", ".join(f'"{name}"' for name in usernames)
        return ("# SurgReview demo accounts (synthetic demo data only). Every account below has this password.\n"
                f'password = "{secrets.token_urlsafe(12)}"\nusers = [{names}]\n')

    return tomllib.loads(_read_or_create(data_dir / DEMO_CREDENTIALS_FILE, render))["password"]
