"""The Dashboard tab: benchmark leaderboards per model (Go Zone grounding, Surg-R1 tasks, Arena Score) over a
case set, with charts per phase, per dataset, the phase confusion matrix and the IoU distribution.

Model names appear here, so blind reviewers do not get this tab: every handler checks the role on the
server, and the filter choices are filled on page load for allowed users only. Each handler opens one
session and calls one service (review.metrics.leaderboard); the figures come from app.dashboard_charts.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import auth, dashboard_charts, render
from app.errors import user_action
from app.services import Services
from app.tabs.studies import write_csv
from db.cases import CaseFilter
from db.users import Actor
from models.compare import filter_options
from review.metrics.leaderboard import CHOICES, PRIMARY, Dashboard, dashboard

TITLE = "Dashboard"
ROLES = frozenset({"admin", "educator", "annotator", "approver"})
ANY = "(any)"
FILTERS = ("dataset", "split", "tag")
TASK_LABELS = {
    "gozone": "Go Zone grounding",
    "phase": "Phase",
    "action": "Action",
    "triplet": "Triplet",
    "cvs": "CVS",
    "arena": "Arena Score",
}
CLASS_TITLES = {"ref_phase": "per reference phase", "ref": "per reference class"}
N_BOOT = 1000


def case_filter(dataset: str | None, split: str | None, tag: str | None) -> CaseFilter:
    values = [None if v in (None, "", ANY) else v for v in (dataset, split, tag)]
    return CaseFilter(dataset=values[0], split=values[1], tags=(values[2],) if values[2] else ())


def summary_html(view: Dashboard) -> str:
    """Which runs were scored and over how many predictions."""
    board = view.board
    if board.metrics.empty:
        return "<p>No finished predictions of this task on cases with a reference label match the filter.</p>"
    rows = board.runs.assign(
        predictions=(
            board.runs["model"].map(board.rows["model"].value_counts())
            if "model" in board.rows.columns
            else 0
        )
    ).fillna({"predictions": 0})
    items = "".join(
        f"<li><b>{render.esc(r.model)}</b>: run {int(r.run)} ({render.esc(r.task)}, prompt "
        f"{render.esc(r.prompt_version)}), {int(r.predictions)} predictions scored</li>"
        for r in rows.itertuples()
    )
    return (
        f"<p>{TASK_LABELS[board.task]}: values in %, 95 % bootstrap intervals over cases "
        f"({N_BOOT} rounds, seed 0). Each model's newest finished run:</p><ul>{items}</ul>"
    )


class DashboardHandlers:
    """The tab's event handlers over one process's services (no per-user state here)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _actor(self, request: gr.Request) -> Actor:
        return auth.tab_actor(self.services, request, ROLES)

    def populate(self, request: gr.Request) -> list[Any]:
        """On page load, for allowed roles only: the values each case filter can take."""
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return [gr.skip()] * len(FILTERS)
        with self.services.db.session_scope() as session:
            options = filter_options(session)
        return [
            gr.Dropdown(choices=[ANY, *values], value=ANY)
            for values in (options.datasets, options.splits, options.tags)
        ]

    def compute(self, request: gr.Request, task: str, dataset: str, split: str, tag: str) -> list[Any]:
        """Summary, leaderboard table, the five figures of ``task`` over the filtered cases and the
        leaderboard as a CSV file for the download button."""
        self._actor(request)
        with self.services.db.session_scope() as session:
            view = dashboard(session, task, case_filter(dataset, split, tag), n_boot=N_BOOT)
        board, metric = view.board, PRIMARY[task]
        class_title = CLASS_TITLES.get(view.class_column or "", "")
        dataset_figure = (
            dashboard_charts.breakdown_figure(
                view.per_dataset.assign(benchmark=view.per_dataset["metric"], metric="arena"),
                "benchmark",
                "arena",
                "per benchmark",
            )
            if task == "arena"
            else dashboard_charts.breakdown_figure(view.per_dataset, "dataset", metric, "per dataset")
        )
        return [
            summary_html(view),
            board.table().round(4),
            dashboard_charts.leaderboard_figure(board.metrics),
            dashboard_charts.breakdown_figure(view.per_class, view.class_column or "", metric, class_title),
            dataset_figure,
            dashboard_charts.confusion_figure(view.confusion),
            dashboard_charts.iou_figure(board.rows),
            write_csv(board.table().to_csv(index=False), f"leaderboard-{task}.csv"),
        ]


def build(services: Services) -> None:
    gr.Markdown(
        "Benchmark metrics per model over a case set. Model names are shown: this view is not blind. "
        "Definitions: Acc@0.25 share of boxes with IoU >= 0.25; mA mean of Acc@0.25...0.50; CD centre "
        "distance / image diagonal; C- only cases with the right phase; H- a box under a wrong phase "
        "counts as IoU 0; a missing box counts as IoU 0."
    )
    handlers = DashboardHandlers(services)
    with gr.Row():
        task = gr.Dropdown(
            [(TASK_LABELS[t], t) for t in CHOICES], value="gozone", label="Task", elem_id="dashboard-task"
        )
        filters = [
            gr.Dropdown([ANY], value=ANY, label=f"Cases: {name}", elem_id=f"dashboard-filter-{name}")
            for name in FILTERS
        ]
        show = gr.Button("Compute", variant="primary", elem_id="dashboard-compute")
    summary = gr.HTML(elem_id="dashboard-summary")
    table = gr.Dataframe(label="Leaderboard", interactive=False, elem_id="dashboard-table")
    csv = gr.DownloadButton("Download CSV", elem_id="dashboard-csv")
    overview = gr.Plot(label="Leaderboard", elem_id="dashboard-plot-leaderboard")
    with gr.Row():
        per_class = gr.Plot(label="Per phase", elem_id="dashboard-plot-phase")
        per_dataset = gr.Plot(label="Per dataset", elem_id="dashboard-plot-dataset")
    confusion = gr.Plot(label="Confusion matrix", elem_id="dashboard-plot-confusion")
    ious = gr.Plot(label="IoU distribution", elem_id="dashboard-plot-iou")

    gr.on(None, user_action(handlers.populate), outputs=filters, show_progress="hidden")
    inputs = [task, *filters]
    show.click(
        user_action(handlers.compute),
        inputs=inputs,
        outputs=[summary, table, overview, per_class, per_dataset, confusion, ious, csv],
        api_name="dashboard_metrics",
    )
