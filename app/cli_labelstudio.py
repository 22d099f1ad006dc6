"""``surgreview labelstudio ...``: push cases to a Label Studio project and pull its annotations back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from db.errors import DomainError

labelstudio_cli = typer.Typer(
    help="Sync Go Zone correction with a Label Studio server.", no_args_is_help=True
)

Url = Annotated[
    str | None,
    typer.Option(help="Label Studio base URL, e.g. http://127.0.0.1:8080 (default: the setting "
                      "SURGREVIEW_LABEL_STUDIO_URL)."),
]
Token = Annotated[
    str | None,
    typer.Option(help="Label Studio legacy API token, Account & Settings (default: the setting "
                      "SURGREVIEW_LABEL_STUDIO_TOKEN)."),
]


def _connect(services, url: str | None, token: str | None):
    """A client for the server named on the command line or in the settings."""
    from annotation.labelstudio import connect

    url = url or services.settings.label_studio_url
    token = token or services.settings.label_studio_token.get_secret_value()
    if not url or not token:
        raise DomainError("Give the Label Studio URL and API token (--url/--token, or the settings "
                          "SURGREVIEW_LABEL_STUDIO_URL and SURGREVIEW_LABEL_STUDIO_TOKEN).")
    return connect(url, token)
Project = Annotated[str, typer.Option(help="Project title (push creates it when missing) or numeric id.")]


@contextmanager
def _scope() -> Iterator:
    """(services, session) in one transaction; a domain error is printed and exits with status 1."""
    from app.cli import _services

    services = _services()
    try:
        with services.db.session_scope() as session:
            yield services, session
    except DomainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        services.close()


def _finish(result) -> None:
    typer.echo(f"project {result.project_id}")
    typer.echo(result.summary.render())
    if result.summary.rejected:
        raise typer.Exit(code=3)


def _actor_label() -> str:
    from app.cli import _actor

    return _actor()


@labelstudio_cli.command("push")
def push_cmd(
    project: Project,
    url: Url = None,
    token: Token = None,
    model: Annotated[str | None, typer.Option(help="Send this model's Go Zone as predictions.")] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    procedure: Annotated[str | None, typer.Option()] = None,
    video: Annotated[str | None, typer.Option()] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Cases with this tag (repeatable).")] = None,
    phase: Annotated[str | None, typer.Option(help="Cases whose reference label has this phase.")] = None,
    case: Annotated[list[str] | None, typer.Option(help="A case key (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many cases.")] = None,
) -> None:
    """Push the matching cases as tasks (once per case) with MODEL's Go Zone as a prediction."""
    from annotation.labelstudio import push
    from db.cases import CaseFilter

    case_filter = CaseFilter(
        dataset=dataset,
        procedure=procedure,
        video=video,
        split=split,
        tags=tuple(tag or ()),
        phase=phase,
        keys=tuple(case or ()),
        limit=limit,
    )
    with _scope() as (services, session):
        client = _connect(services, url, token)
        result = push(
            session,
            services.frames,
            client,
            project=project,
            case_filter=case_filter,
            model=model,
            actor_label=_actor_label(),
        )
    _finish(result)


@labelstudio_cli.command("pull")
def pull_cmd(
    project: Project,
    url: Url = None,
    token: Token = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as-user",
            help="SurgReview user who owns annotations whose Label Studio annotator matches "
            "no SurgReview user.",
        ),
    ] = None,
) -> None:
    """Store every new annotation of the project as a new version of its case's Go Zone annotation."""
    from annotation.labelstudio import pull

    with _scope() as (services, session):
        client = _connect(services, url, token)
        result = pull(session, client, project=project, as_user=as_user, actor_label=_actor_label())
    _finish(result)
