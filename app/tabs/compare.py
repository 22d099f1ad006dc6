"""The Compare tab: chosen models side by side on one case, their reasoning in panels and their boxes drawn.

Callbacks are thin: check the role, call one service (models.compare, models.compare_run,
annotation.importers.uploads), render with app.render. Per-user state holds ids and names only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from annotation.importers.uploads import import_uploads
from app import auth, render
from app.tabs import teach
from app.errors import user_action
from app.model_catalog import all_specs
from app.services import Services
from db.cases import CaseFilter
from db.errors import DomainError
from db.users import Actor
from models.backends import ModelSpec
from models.compare import TASK_LABELS, filter_options, matching_cases, prepare_comparison
from models.compare_run import compare_live

TITLE = "Compare"
# Not reviewers: a blind reviewer who could compare named models on the cases of a study would be unblinded.
ROLES = frozenset({"admin", "educator", "annotator", "approver"})
ANY = "(any)"
FILTERS = ("dataset", "procedure", "phase", "split", "tag")


def _case_dropdown(cases: list[tuple[int, str]]) -> gr.Dropdown:
    choices = [(key, case_id) for case_id, key in cases]
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None,
                       info=f"{len(choices)} matching case{'s' if len(choices) != 1 else ''}")


class CompareHandlers:
    """The tab's event handlers over one process's services (no per-user state here)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _actor(self, request: gr.Request) -> Actor:
        return auth.tab_actor(self.services, request, ROLES)

    def _specs(self, names: list[str] | None) -> list[ModelSpec]:
        """The registry entries of the chosen models, in the order chosen."""
        with self.services.db.session_scope() as session:
            specs = all_specs(session, self.services.settings)
        unknown = [n for n in names or () if n not in specs]
        if unknown:
            raise DomainError(f"Unknown model {', '.join(unknown)}; reload the page to see the current "
                              "models.")
        return [specs[n] for n in names or ()]

    def populate(self, request: gr.Request) -> list[Any]:
        """On page load: filter values, models and the first matching cases (nothing for other roles)."""
        if not auth.actor_for(self.services, request).has(*ROLES):
            return [gr.skip()] * (len(FILTERS) + 2)
        with self.services.db.session_scope() as session:
            options = filter_options(session)
            specs = all_specs(session, self.services.settings)
            cases = matching_cases(session, CaseFilter())
        filters = [gr.Dropdown(choices=[ANY, *values], value=ANY) for values in
                   (options.datasets, options.procedures, options.phases, options.splits, options.tags)]
        return [*filters, gr.CheckboxGroup(choices=list(specs)), _case_dropdown(cases)]

    def list_cases(self, dataset: str, procedure: str, phase: str, split: str, tag: str,
                   request: gr.Request) -> gr.Dropdown:
        self._actor(request)
        values = [None if v in (None, "", ANY) else v for v in (dataset, procedure, phase, split, tag)]
        case_filter = CaseFilter(dataset=values[0], procedure=values[1], phase=values[2], split=values[3],
                                 tags=(values[4],) if values[4] else ())
        with self.services.db.session_scope() as session:
            return _case_dropdown(matching_cases(session, case_filter))

    def upload_frames(self, files: list[str] | None, request: gr.Request) -> tuple[str, Any]:
        """Uploaded files become cases of dataset "uploads"; the case list then shows them."""
        actor = self._actor(request)
        pairs = [(Path(f).name, Path(f)) for f in files or ()]
        with self.services.db.session_scope() as session:
            result = import_uploads(session, self.services.frames, pairs, actor_id=actor.user_id,
                                    actor=actor.username)
        lines = "".join(f"<li>{render.esc(line)}</li>" for line in result.render().splitlines())
        uploaded = [(c.case_id, c.key) for c in result.cases]
        return f'<ul class="sr-upload">{lines}</ul>', _case_dropdown(uploaded) if uploaded else gr.skip()

    def run_compare(self, case_id: int | None, task: str, names: list[str] | None,
                    request: gr.Request) -> Iterator[tuple]:
        """Cached answers at once, then each other model as it runs (streamed where its backend streams)."""
        self._actor(request)
        if case_id is None:
            raise DomainError("Choose a case or upload a frame first.")
        specs, names = self._specs(names), list(names or ())
        state = {"case_id": case_id, "task": task, "models": names}
        drawn: tuple[str, ...] | None = None
        services = self.services
        snapshots = compare_live(services.db, services.frames, services.backends.get, case_id, specs, task)
        for comparison in snapshots:
            finished = tuple(v.model for v in comparison.views if v.finished)
            image = render.comparison_image(comparison, names) if finished != drawn else gr.skip()
            shown = gr.CheckboxGroup(choices=names, value=names) if drawn is None else gr.skip()
            drawn = finished
            yield (render.esc(render.progress_text(comparison)), render.panels_html(comparison), image,
                   render.legend_html(comparison, names), shown, state)

    def redraw(self, state: dict | None, shown: list[str] | None, request: gr.Request) -> tuple:
        """The drawing and legend with only the ``shown`` models, from what is stored (nothing is run)."""
        self._actor(request)
        if not state:
            return gr.skip(), gr.skip()
        specs = self._specs(state["models"])
        with self.services.db.session_scope() as session:
            comparison = prepare_comparison(session, self.services.frames, state["case_id"], specs,
                                            state["task"])
        return render.comparison_image(comparison, shown or ()), render.legend_html(comparison, shown or ())


def build(services: Services) -> None:
    gr.Markdown("Compare models on one frame: their answers, their reasoning level by level and their boxes. "
                "Model text is shown as plain text.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            upload = gr.File(label="Upload frames", file_count="multiple", file_types=["image"],
                             type="filepath", elem_id="compare-upload")
            upload_status = gr.HTML(elem_id="compare-upload-status")
            with gr.Accordion("Or pick existing cases: filters", open=False):
                filters = [gr.Dropdown(label=name.capitalize() if name != "phase" else "Reference phase",
                                       choices=[ANY], value=ANY, elem_id=f"compare-filter-{name}")
                           for name in FILTERS]
            case = gr.Dropdown(label="Case", choices=[], elem_id="compare-case")
            task = gr.Dropdown(label="Task", choices=[(label, key) for key, label in TASK_LABELS.items()],
                               value="gozone", elem_id="compare-task")
            models = gr.CheckboxGroup(label="Models", choices=[], elem_id="compare-models")
            run = gr.Button("Compare", variant="primary", elem_id="compare-run")
            teach.collect_button(services, case)  # educators: one click adds the case to a collection
        with gr.Column(scale=2):
            progress = gr.HTML(elem_id="compare-progress")
            image = gr.Image(label="Boxes", type="pil", interactive=False, elem_id="compare-image")
            shown = gr.CheckboxGroup(label="Show in drawing", choices=[], elem_id="compare-shown")
            legend = gr.HTML(elem_id="compare-legend", css_template=render.PANEL_CSS)
    panels = gr.HTML(elem_id="compare-panels", css_template=render.PANEL_CSS)
    state = gr.State(None)

    handlers = CompareHandlers(services)
    gr.on(None, user_action(handlers.populate), outputs=[*filters, models, case])
    for dropdown in filters:
        dropdown.input(user_action(handlers.list_cases), inputs=filters, outputs=case)
    upload.upload(user_action(handlers.upload_frames), inputs=upload, outputs=[upload_status, case])
    run.click(user_action(handlers.run_compare), inputs=[case, task, models],
              outputs=[progress, panels, image, legend, shown, state], concurrency_limit=4,
              concurrency_id="compare-run")
    shown.input(user_action(handlers.redraw), inputs=[state, shown], outputs=[image, legend])
