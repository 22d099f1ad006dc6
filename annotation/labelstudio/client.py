"""The Label Studio connection: the client, its errors in words a user can act on, projects and tasks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from annotation.importers.common import ImportSummary
from db.errors import DomainError, NotFound

PAGE_SIZE = 100


class LabelStudioError(DomainError):
    """Label Studio could not be reached, refused us, or holds something we cannot sync."""


@dataclass(frozen=True)
class SyncResult:
    project_id: int
    summary: ImportSummary


def connect(url: str, token: str, *, timeout: float = 60.0) -> LabelStudio:
    """A client for the server at ``url`` with a legacy API ``token``; checks both with one request."""
    if not url or not token:
        raise LabelStudioError(
            "Give the Label Studio URL and API token (--url/--token or "
            "SURGREVIEW_LABEL_STUDIO_URL/SURGREVIEW_LABEL_STUDIO_TOKEN)."
        )
    client = LabelStudio(base_url=url.rstrip("/"), api_key=token, timeout=timeout)
    with calling(url):
        client.users.whoami()
    return client


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Turn the SDK's HTTP failures into a LabelStudioError a user can act on."""
    try:
        yield
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio refused the API token ({exc.status_code}) at {what}."
            ) from exc
        raise LabelStudioError(
            f"Label Studio answered {exc.status_code} at {what}: {str(exc.body)[:300]}"
        ) from exc
    except httpx.HTTPError as exc:
        raise LabelStudioError(
            f"Cannot reach Label Studio at {what}: {exc.__class__.__name__}: {exc}"
        ) from exc


# --- projects ----------------------------------------------------------------------------------------


def find_project(client: LabelStudio, project: str | int) -> int | None:
    """The id of the project named by ``project``: an id (int or all digits) or an exact title."""
    with calling("the project list"):
        if isinstance(project, int) or str(project).isdigit():
            try:
                return client.projects.get(id=int(project)).id
            except ApiError as exc:
                if exc.status_code == 404:
                    return None
                raise
        matches = [
            p.id for p in client.projects.list(title=str(project), page_size=PAGE_SIZE) if p.title == project
        ]
    if len(matches) > 1:
        raise LabelStudioError(
            f"Label Studio has {len(matches)} projects titled {project!r} "
            f"(ids {', '.join(map(str, matches))}); name one by its id."
        )
    return matches[0] if matches else None


def ensure_project(client: LabelStudio, project: str | int, config: str) -> tuple[int, bool]:
    """(id, created): the project named ``project`` with the labeling ``config``, created when missing.
    An existing project whose config differs is updated (Label Studio refuses when that would orphan
    existing annotations)."""
    project_id = find_project(client, project)
    if project_id is None:
        if str(project).isdigit():
            raise NotFound(f"Label Studio has no project {project}.")
        with calling("project creation"):
            return client.projects.create(title=str(project), label_config=config).id, True
    with calling(f"project {project_id}"):
        current = client.projects.get(id=project_id).label_config
        if (current or "").strip() != config.strip():
            client.projects.update(id=project_id, label_config=config)
    return project_id, False


def project_tasks(client: LabelStudio, project_id: int, *, only_annotated: bool = False) -> Iterator[Any]:
    """Every task of the project with its annotations and predictions, page by page."""
    with calling(f"the tasks of project {project_id}"):
        yield from client.tasks.list(
            project=project_id, fields="all", only_annotated=only_annotated or None, page_size=PAGE_SIZE
        )


def field_of(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
