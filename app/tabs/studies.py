"""The Studies tab (admins): set up blind review studies, extend running ones, and read their results.

This is the only unblinded view: model names appear here, reviewers only under pseudonyms. Callbacks check
the admin role on the server (the services check it again) and call one service each; the lists are filled
on page load for admins only, so no model name is ever part of the page config another user receives.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from app import auth, charts, render
from app.errors import user_action
from app.model_catalog import all_specs
from app.services import Services
from db.cases import CaseFilter
from db.errors import DomainError
from db.schema import REVEAL_POLICIES
from db.users import Actor, list_users
from models.compare import TASK_LABELS, filter_options
from review.results import StudyResults, results_csv, study_results
from review.studies import StudySetup, add_cases, add_reviewers, close_study, create_study, list_studies

TITLE = "Studies"
ROLES = frozenset({"admin"})
ANY = "(any)"
FILTERS = ("dataset", "split", "phase", "tag")
REVEAL_LABELS = {"never": "never (double-blind)", "after_submit": "after submit (open review)"}
TABLES = ("selected", "accuracy", "levels", "bradley_terry", "agreement", "progress", "missing", "leaks")
N_BOOT = 1000


def _case_filter(dataset: str, split: str, phase: str, tag: str) -> CaseFilter:
    values = [None if v in (None, "", ANY) else v for v in (dataset, split, phase, tag)]
    return CaseFilter(dataset=values[0], split=values[1], phase=values[2],
                      tags=(values[3],) if values[3] else ())


def _limit(value: float | None) -> int | None:
    return int(value) if value else None


def _table_html(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{render.esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{render.esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="sr-table"><tr>{head}</tr>{body}</table>'


def setup_html(setup: StudySetup, verb: str) -> str:
    """What creating a study or adding cases did: counts, the cases missing a prediction, identity leaks."""
    parts = [(f"<p>Study <b>{render.esc(setup.study.name)}</b> {verb}: {len(setup.assigned)} cases assigned, "
              f"{setup.items} review items.</p>")]
    if setup.scores:
        rows = [(case, f"{score:.2f}") for case, score in setup.scores.items()]
        parts.append("<details><summary>Assigned cases and how informative each is (models disagree on the "
                     "answer or phase, their boxes overlap little, no reference label yet; 0-1)</summary>"
                     + _table_html(rows, ("case", "informativeness")) + "</details>")
    if setup.missing:
        rows = [(case, ", ".join(models)) for case, models in sorted(setup.missing.items())]
        parts.append(f"<p>{len(rows)} cases lack a usable prediction (listed, not assigned):</p>"
                     + _table_html(rows, ("case", "models missing")))
    if setup.leaks:
        rows = [(case, flag["model"], ", ".join(flag["terms"])) for case, flags in sorted(setup.leaks.items())
                for flag in flags]
        parts.append(f"<p>{len(rows)} outputs may reveal their model (check before reviewers see them):</p>"
                     + _table_html(rows, ("case", "model", "terms")))
    return "".join(parts)


def _study_choices(studies: list) -> list[tuple[str, int]]:
    return [(f"{s.name} ({s.task}, {s.status})", s.id) for s in studies]


def _summary_html(results: StudyResults) -> str:
    ratings = results.ratings
    judged, reviewers = (ratings["item"].nunique(), ratings["reviewer"].nunique()) if len(ratings) else (0, 0)
    return (f"<p>{judged} items judged by {reviewers} reviewers; {len(results.missing)} cases missing a "
            f"prediction; {len(results.leaks)} identity-leak flags.</p>")


def write_csv(text: str, name: str) -> str:
    """``text`` in a new temporary file called ``name``, for the download button."""
    path = Path(tempfile.mkdtemp(prefix="surgreview-csv-")) / name
    path.write_text(text, encoding="utf-8")
    return str(path)


class StudiesHandlers:
    """The tab's event handlers over one process's services (no per-user state here)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _actor(self, request: gr.Request) -> Actor:
        return auth.tab_actor(self.services, request, ROLES)

    def populate(self, request: gr.Request) -> list[Any]:
        """On page load, for admins only: models, filter values, reviewers and studies."""
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return [gr.skip()] * (len(FILTERS) + 4)
        with self.services.db.session_scope() as session:
            specs = all_specs(session, self.services.settings)
            options = filter_options(session)
            reviewers = [u.username for u in list_users(session)
                         if u.is_active and "reviewer" in u.role_names]
            studies = list_studies(session, actor)
        filters = [gr.Dropdown(choices=[ANY, *values], value=ANY)
                   for values in (options.datasets, options.splits, options.phases, options.tags)]
        choices = _study_choices(studies)
        return [gr.CheckboxGroup(choices=list(specs)), *filters, gr.CheckboxGroup(choices=reviewers),
                gr.Dropdown(choices=reviewers), gr.Dropdown(choices=choices, value=choices[0][1] if choices
                                                            else None)]

    def create(self, request: gr.Request, name: str, task: str, models: list[str] | None, dataset: str,
               split: str, phase: str, tag: str, reviewers: list[str] | None, k: float | None, reveal: str,
               seed: float | None, by_informativeness: bool, limit: float | None) -> tuple[str, Any]:
        """Create the study; report missing predictions and leaks; select it in the study list."""
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            setup = create_study(session, actor, name=name or "", task=task, model_names=list(models or ()),
                                 case_filter=_case_filter(dataset, split, phase, tag),
                                 reviewers=list(reviewers or ()), k=int(k or 0), reveal_policy=reveal,
                                 seed=int(seed or 0), order_by_informativeness=bool(by_informativeness),
                                 limit=_limit(limit))
            html, study_id = setup_html(setup, "created"), setup.study.id
            choices = _study_choices(list_studies(session, actor))
        return html, gr.Dropdown(choices=choices, value=study_id)

    def extend_cases(self, request: gr.Request, study_id: int | None, dataset: str, split: str, phase: str,
                     tag: str, limit: float | None) -> str:
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            setup = add_cases(session, actor, self._study(study_id), _case_filter(dataset, split, phase, tag),
                              _limit(limit))
            return setup_html(setup, "extended")

    def extend_reviewers(self, request: gr.Request, study_id: int | None, usernames: list[str] | None) -> str:
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            added = add_reviewers(session, actor, self._study(study_id), list(usernames or ()))
        return (f"<p>{len(added)} reviewers added. They receive the cases added from now on (submitted work "
                "and existing queues are not changed).</p>")

    def close(self, request: gr.Request, study_id: int | None) -> str:
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            study = close_study(session, actor, self._study(study_id))
            return f"<p>Study <b>{render.esc(study.name)}</b> is closed: judgments can no longer change.</p>"

    def results(self, request: gr.Request, study_id: int | None) -> list[Any]:
        """Every results table of the study, unblinded, with the charts."""
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            results = study_results(session, actor, self._study(study_id), n_boot=N_BOOT)
        tables = [getattr(results, name) for name in TABLES]
        figures = [charts.rates_figure(results.selected, results.accuracy),
                   charts.bradley_terry_figure(results.bradley_terry),
                   charts.level_errors_figure(results.levels)]
        return [_summary_html(results), *figures, *(table.round(4) for table in tables)]

    def download(self, request: gr.Request, study_id: int | None, table: str) -> str:
        """One results table as a CSV file for the download button."""
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            text = results_csv(session, actor, self._study(study_id), table, n_boot=N_BOOT)
        return write_csv(text, f"study-{int(study_id)}-{table}.csv")

    @staticmethod
    def _study(study_id: int | None) -> int:
        if study_id is None:
            raise DomainError("Choose a study first.")
        return int(study_id)


def _new_study_form() -> dict[str, Any]:
    form: dict[str, Any] = {}
    with gr.Row():
        form["name"] = gr.Textbox(label="Study name", elem_id="studies-name")
        form["task"] = gr.Dropdown([(label, key) for key, label in TASK_LABELS.items()], value="gozone",
                                   label="Task", elem_id="studies-task")
        form["seed"] = gr.Number(0, label="Seed", precision=0, elem_id="studies-seed")
    form["models"] = gr.CheckboxGroup([], label="Models (2 to 5; shown to reviewers as A, B, C ...)",
                                      elem_id="studies-models")
    with gr.Row():
        for name in FILTERS:
            form[name] = gr.Dropdown([ANY], value=ANY, label=f"Cases: {name}",
                                     elem_id=f"studies-filter-{name}")
    form["reviewers"] = gr.CheckboxGroup([], label="Reviewers", elem_id="studies-reviewers")
    with gr.Row():
        form["k"] = gr.Number(2, label="Reviewers per case (k)", precision=0, elem_id="studies-k")
        form["reveal"] = gr.Radio([(REVEAL_LABELS[p], p) for p in REVEAL_POLICIES], value="never",
                                  label="Reveal models", elem_id="studies-reveal")
        form["order"] = gr.Checkbox(label="Most informative cases first", elem_id="studies-order")
        form["limit"] = gr.Number(None, label="Case limit (0: all)", precision=0, elem_id="studies-limit")
    return form


def _results_area() -> dict[str, Any]:
    area: dict[str, Any] = {"summary": gr.HTML(elem_id="studies-summary")}
    with gr.Row():
        area["rates"] = gr.Plot(label="Selected ratio and accuracy", elem_id="studies-plot-rates")
        area["bt"] = gr.Plot(label="Bradley-Terry", elem_id="studies-plot-bt")
    area["levels_plot"] = gr.Plot(label="Errors per level", elem_id="studies-plot-levels")
    for name in TABLES:
        area[name] = gr.Dataframe(label=name.replace("_", "-").capitalize(), interactive=False,
                                  elem_id=f"studies-table-{name}")
    with gr.Row():
        area["table"] = gr.Dropdown(list(StudyResults.table_names()), value="ratings", label="CSV table",
                                    elem_id="studies-csv-table")
        area["csv"] = gr.DownloadButton("Download CSV", elem_id="studies-csv")
    return area


def build(services: Services) -> None:
    gr.Markdown("Set up blind review studies and read their results. **Unblinded**: model names appear only "
                "here, never on a reviewer's screen.")
    handlers = StudiesHandlers(services)
    with gr.Accordion("New study", open=True):
        form = _new_study_form()
        create = gr.Button("Create study", variant="primary", elem_id="studies-create")
        setup = gr.HTML(elem_id="studies-setup", css_template=render.PANEL_CSS)
    with gr.Row():
        study = gr.Dropdown([], label="Study", elem_id="studies-study", scale=3)
        show = gr.Button("Show results", variant="primary", elem_id="studies-results", scale=1)
    with gr.Accordion("Change a running study", open=False):
        with gr.Row():
            more = gr.Dropdown([], multiselect=True, label="Add reviewers", elem_id="studies-add-reviewers")
            add_people = gr.Button("Add reviewers", elem_id="studies-add-reviewers-button")
            add_more = gr.Button("Add the cases of the filter above", elem_id="studies-add-cases")
            close = gr.Button("Close study", variant="stop", elem_id="studies-close")
        changed = gr.HTML(elem_id="studies-changed")
    area = _results_area()

    filters = [form[name] for name in FILTERS]
    gr.on(None, user_action(handlers.populate),
          outputs=[form["models"], *filters, form["reviewers"], more, study], show_progress="hidden")
    create.click(user_action(handlers.create),
                 inputs=[form["name"], form["task"], form["models"], *filters, form["reviewers"], form["k"],
                         form["reveal"], form["seed"], form["order"], form["limit"]],
                 outputs=[setup, study], api_name="create_study")
    add_more.click(user_action(handlers.extend_cases), inputs=[study, *filters, form["limit"]],
                   outputs=changed)
    add_people.click(user_action(handlers.extend_reviewers), inputs=[study, more], outputs=changed)
    close.click(user_action(handlers.close), inputs=study, outputs=changed)
    result_outputs = [area[n] for n in ("summary", "rates", "bt", "levels_plot", *TABLES)]
    download = user_action(handlers.download)
    show.click(user_action(handlers.results), inputs=study, outputs=result_outputs,
               api_name="study_results").success(download, inputs=[study, area["table"]], outputs=area["csv"])
    area["table"].input(download, inputs=[study, area["table"]], outputs=area["csv"],
                        api_name="study_results_csv")
