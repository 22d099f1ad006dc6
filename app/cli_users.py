"""``surgreview users ...``: local accounts and roles from the command line, and the demo accounts' hint."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from db.errors import DomainError

users_cli = typer.Typer(help="User accounts and roles.", no_args_is_help=True)
# The role names are listed by hand so that `--help` need not import the schema; db.users checks them.
Roles = Annotated[list[str] | None, typer.Option(
    "--role", help="admin, reviewer, annotator, approver, educator or resident (repeatable).")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from one line of stdin "
                                             "instead of prompting.")]


@contextmanager
def _session() -> Iterator:
    """One transaction; a domain error is printed as it is and exits with status 1."""
    from app.cli import _services

    services = _services()
    try:
        with services.db.session_scope() as session:
            yield session
    except DomainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        services.close()


def _by() -> str:
    from app.cli import _actor

    return _actor()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_cli.command("add")
def users_add(username: str, role: Roles = None, password_stdin: PasswordStdin = False) -> None:
    """Create a local account with a password (prompted twice unless --password-stdin)."""
    from db.users import create_user

    password = _password(password_stdin)
    with _session() as session:
        user = create_user(session, username, password=password, roles=role or (), by=_by())
        typer.echo(f"added {user.username} ({', '.join(sorted(user.role_names)) or 'no role'})")


@users_cli.command("list")
def users_list() -> None:
    """Show every account: username, roles, active or disabled, SSO or local."""
    from db.users import list_users

    with _session() as session:
        for user in list_users(session):
            kind = "sso" if user.oidc_subject else "local"
            state = "active" if user.is_active else "disabled"
            roles = ",".join(sorted(user.role_names)) or "-"
            typer.echo(f"{user.username:<24} {roles:<40} {state:<8} {kind}")


@users_cli.command("disable")
def users_disable(username: str) -> None:
    """Stop USERNAME from signing in; their open sessions end at their next request."""
    from db.users import disable

    with _session() as session:
        typer.echo(f"disabled {disable(session, username, by=_by()).username}")


@users_cli.command("set-roles")
def users_set_roles(username: str, role: Roles = None) -> None:
    """Replace USERNAME's roles with the given ones (none given: no role)."""
    from db.users import set_roles

    with _session() as session:
        user = set_roles(session, username, role or (), by=_by())
        typer.echo(f"{user.username}: {', '.join(sorted(user.role_names)) or 'no role'}")


@users_cli.command("set-password")
def users_set_password(username: str, password_stdin: PasswordStdin = False) -> None:
    """Give USERNAME a new local password."""
    from db.users import set_password

    password = _password(password_stdin)
    with _session() as session:
        typer.echo(f"password changed for {set_password(session, username, password, by=_by()).username}")


def demo_login_hint(data_dir, host: str, port: int) -> str:
    """How to sign in to the demo: the URL, the usernames with their roles, and the shared password."""
    from annotation.demo.users import DEMO_USERS
    from app.local_secrets import DEMO_CREDENTIALS_FILE, demo_password

    password = demo_password(data_dir, list(DEMO_USERS))
    others = ", ".join(f"{name} ({'/'.join(roles)})" for name, roles in DEMO_USERS.items() if name != "admin")
    return (f"Log in at http://{host}:{port}/ as admin / {password}\n"
            f"  the same password works for {others}\n"
            f"  (kept in {data_dir / DEMO_CREDENTIALS_FILE})")
