"""The Export tab (admins): write training data and benchmark bundles under ``<data_dir>/exports``.

One handler per button; each checks the admin role on the server, opens one session scope and calls
``app.exporting.run_export``. Bundles go to a named folder under the data folder only (a browser never picks a
server path).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from app import auth, render
from app.errors import user_action
from app.exporting import KINDS, NEEDS_TARGET, ExportRequest, run_export
from app.services import Services
from db.bundles import ExportFilters
from db.errors import DomainError
from models.compare import filter_options
from review.preferences import PairRules
from review.studies import list_studies

TITLE = "Export"
ROLES = frozenset({"admin"})
ANY = "(any)"
NO_TARGET = "default (preference data: the models' own text; SFT, GRPO, rejection sampling: Qwen2.5-VL)"
# As on the command line: training targets need a box convention, Qwen2.5-VL's unless chosen otherwise.
DEFAULT_TARGET = "qwen25"
TARGET_CHOICES = [(NO_TARGET, ""), ("Qwen2.5-VL (resized pixels)", "qwen25"), ("Qwen3-VL (0-1000)", "qwen3")]
_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _choice(value: str | None) -> str | None:
    return None if value in (None, "", ANY) else value


def _date(value: str | None, name: str) -> datetime | None:
    """An ISO date or date-time from a textbox (UTC when no zone); DomainError when unreadable."""
    if not (value or "").strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise DomainError(f"{name} is not a date like 2026-01-31 or 2026-01-31T12:00.") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def export_folder(services: Services, name: str | None) -> Path:
    """``<data_dir>/exports/<name>``; DomainError for a name that is not a plain folder name."""
    name = (name or "").strip()
    if not _FOLDER.fullmatch(name):
        raise DomainError("Name the export folder with letters, digits, '.', '_' or '-' (no slashes).")
    return services.settings.data_dir / "exports" / name


def result_html(manifest: dict[str, Any], path: Path) -> str:
    """The manifest's counts, skips and files, and where the bundle is."""
    counts = manifest["counts"]
    rows = [
        f"<p><b>{render.esc(manifest['kind'])}</b> export: {counts.get('rows', 0)} rows, "
        f"{manifest['images']} images, written to <code>{render.esc(str(path))}</code>.</p>"
    ]
    skipped = counts.get("skipped") or {}
    if skipped:
        rows.append(
            "<ul>"
            + "".join(f"<li>skipped {n}: {render.esc(reason)}</li>" for reason, n in skipped.items())
            + "</ul>"
        )
    files = [name for name in manifest["files"] if not name.startswith("images/")]
    rows.append(
        "<p>Files: " + ", ".join(f"<code>{render.esc(f)}</code>" for f in files) + " and "
        f"<code>manifest.json</code> (content sha256 <code>{manifest['content_sha256'][:16]}</code>…).</p>"
    )
    return "".join(rows)


class ExportHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def populate(self, request: gr.Request) -> list[Any]:
        """On page load, for admins only: studies, datasets, splits and the target families (sent to nobody
        else: a blind reviewer's page must not even name a model family)."""
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return [gr.skip()] * 4
        with self.services.db.session_scope() as session:
            studies = [s.name for s in list_studies(session, actor)]
            options = filter_options(session)
        return [
            gr.Dropdown(choices=[ANY, *studies], value=ANY),
            gr.Dropdown(choices=[ANY, *options.datasets], value=ANY),
            gr.Dropdown(choices=[ANY, *options.splits], value=ANY),
            gr.Dropdown(choices=TARGET_CHOICES, value=""),
        ]

    def run(
        self,
        request: gr.Request,
        kind: str,
        folder: str,
        study: str,
        dataset: str,
        split: str,
        approved_only: bool,
        since: str,
        until: str,
        target: str,
        min_reviewers: float | None,
        ties: str,
        disagreements: str,
        task: str,
        overwrite: bool,
    ) -> str:
        """Write the export and show its counts and folder."""
        actor = auth.tab_actor(self.services, request, ROLES)
        filters = ExportFilters(
            study=_choice(study),
            dataset=_choice(dataset),
            split=_choice(split),
            approved_only=bool(approved_only),
            since=_date(since, "From"),
            until=_date(until, "Until"),
        )
        rules = PairRules(min_reviewers=int(min_reviewers or 1), ties=ties, disagreements=disagreements)
        target = target or None
        if kind in NEEDS_TARGET and target is None:
            target = DEFAULT_TARGET
        out = export_folder(self.services, folder)
        with self.services.db.session_scope() as session:
            result = run_export(
                session,
                actor,
                self.services.frames,
                ExportRequest(kind, out, filters, rules, target, task or "gozone", overwrite=bool(overwrite)),
            )
        return result_html(result.manifest, result.path)


def build(services: Services) -> None:
    gr.Markdown(
        "Export review judgments and labels as training data (TRL, LLaMA-Factory) or benchmark JSON. "
        "Each export is a folder under the data folder's `exports/` with a `manifest.json`."
    )
    handlers = ExportHandlers(services)
    with gr.Row():
        kind = gr.Dropdown(
            [(f"{k}: {text}", k) for k, text in KINDS.items()],
            value="dpo",
            label="Kind",
            elem_id="exports-kind",
            scale=3,
        )
        folder = gr.Textbox(label="Folder name (under exports/)", elem_id="exports-folder", scale=1)
    with gr.Row():
        study = gr.Dropdown([ANY], value=ANY, label="Study", elem_id="exports-study")
        dataset = gr.Dropdown([ANY], value=ANY, label="Dataset", elem_id="exports-dataset")
        split = gr.Dropdown([ANY], value=ANY, label="Split", elem_id="exports-split")
        approved = gr.Checkbox(label="Approved annotations only", elem_id="exports-approved")
    with gr.Row():
        since = gr.Textbox(label="From (ISO date, UTC)", placeholder="2026-01-01", elem_id="exports-since")
        until = gr.Textbox(label="Until (exclusive)", placeholder="2026-12-31", elem_id="exports-until")
        target = gr.Dropdown([("default", "")], value="", label="Target model family", elem_id="exports-target")
        task = gr.Dropdown(
            ["gozone", "phase", "triplet", "cvs", "action"],
            value="gozone",
            label="GRPO task",
            elem_id="exports-task",
        )
    with gr.Accordion("Pair rules (preference, process and rejection-sampling data)", open=False):
        with gr.Row():
            min_reviewers = gr.Number(
                2, precision=0, label="Minimum reviewers", elem_id="exports-min-reviewers"
            )
            ties = gr.Radio(["drop", "keep"], value="drop", label="50/50 votes", elem_id="exports-ties")
            disagreements = gr.Radio(
                ["keep", "drop"],
                value="keep",
                label="Disagreements (drop: unanimous only)",
                elem_id="exports-disagreements",
            )
    overwrite = gr.Checkbox(label="Replace an existing folder of that name", elem_id="exports-overwrite")
    run = gr.Button("Export", variant="primary", elem_id="exports-run")
    result = gr.HTML(elem_id="exports-result")
    gr.on(None, user_action(handlers.populate), outputs=[study, dataset, split, target],
          show_progress="hidden")
    run.click(
        user_action(handlers.run),
        inputs=[
            kind,
            folder,
            study,
            dataset,
            split,
            approved,
            since,
            until,
            target,
            min_reviewers,
            ties,
            disagreements,
            task,
            overwrite,
        ],
        outputs=result,
        api_name="export",
    )
