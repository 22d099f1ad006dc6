"""The Annotate tab: an annotator's queue and the Go Zone editor (box on the frame, phase, four texts).

The editor opens on the lane's newest version, or on a pre-fill (a model's proposal, the reference, empty).
Per-user state holds ids only: the case, the version the editor started from, the pre-fill source. A save
that finds a newer version keeps everything on screen, shows the other version, and moves the base to it,
so the next save is a deliberate one on top. Admins assign cases to annotators here as well.
"""

from __future__ import annotations

import io
from typing import Any

import gradio as gr
from gradio import processing_utils
from gradio.utils import get_upload_folder
from gradio_image_annotation import image_annotator
from PIL import Image

from annotation import editor
from annotation.queue import STATES, assign_annotators, queue
from annotation.workflow import EditConflict, GoZoneDraft, save_version
from app import annotation_render as view
from app import auth
from app.errors import user_action
from app.keyboard import ANNOTATE_KEYS_JS, KEYS_CSS, annotate_key_help_html
from app.services import Services
from db.cases import CaseFilter, find_case_ids
from db.errors import DomainError
from db.users import Actor, list_users

TITLE = "Annotate"
ROLES = frozenset({"annotator", "admin"})
ALL = "all"
TEXTS = ("location", "exposure", "next_action", "critical_risk")
# ids, editor, phase, four texts, source, status, history, history image, conflict
EDITOR_OUTPUTS = 12


class AnnotateHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def _actor(self, request: gr.Request) -> Actor:
        return auth.tab_actor(self.services, request, ROLES)

    # --- queue ---------------------------------------------------------------------------------------

    def populate(self, request: gr.Request) -> list[Any]:
        """On page load: the user's queue, and for admins the annotators they can assign."""
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return [gr.skip()] * 3
        with self.services.db.session_scope() as session:
            rows = queue(session, actor) if actor.has("annotator") else []
            annotators = ([u.username for u in list_users(session) if "annotator" in {r.role for r in u.roles}
                           and u.is_active] if actor.has("admin") else [])
        choices = view.queue_choices(rows)
        return [gr.Dropdown(choices=choices, value=choices[0][1] if choices else None,
                            info=f"{len(choices)} case(s)"),
                gr.Accordion(visible=actor.has("admin")), gr.CheckboxGroup(choices=annotators)]

    def list_queue(self, state: str, request: gr.Request) -> gr.Dropdown:
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            rows = queue(session, actor, state=None if state == ALL else state)
        choices = view.queue_choices(rows)
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None,
                           info=f"{len(choices)} case(s)")

    def assign(self, dataset: str, usernames: list[str], per_case: float, request: gr.Request) -> str:
        actor = self._actor(request)
        if not usernames:
            raise DomainError("Choose at least one annotator.")
        with self.services.db.session_scope() as session:
            ids = {u.username: u.id for u in list_users(session)}
            case_ids = list(find_case_ids(session, CaseFilter(dataset=dataset.strip() or None)))
            if not case_ids:
                raise DomainError("No case matches that dataset.")
            added = assign_annotators(session, actor, case_ids, [ids[n] for n in usernames if n in ids],
                                      per_case=int(per_case or 1))
        return f"{added} new assignment(s) over {len(case_ids)} case(s)."

    # --- editor --------------------------------------------------------------------------------------

    def open_first(self, case_id: int | None, request: gr.Request) -> list[Any]:
        """After page load: the first case of the queue, for annotators only (others never see the tab)."""
        if not auth.actor_for(self.services, request).has(*ROLES):
            return [gr.skip()] * EDITOR_OUTPUTS
        return self.open_case(case_id, request)

    def open_case(self, case_id: int | None, request: gr.Request, source: str | None = None) -> list[Any]:
        """The editor on ``case_id``: its newest version, or the pre-fill ``source``."""
        actor = self._actor(request)
        if case_id is None:  # an empty queue
            return [gr.skip()] * EDITOR_OUTPUTS
        with self.services.db.session_scope() as session:
            state = editor.open_editor(session, actor, int(case_id), source)
        data = self.services.frames.read(state.frame)
        # The stored file goes to the editor as it is: re-encoding a 1080p frame cost ~0.4 s a case.
        cached = processing_utils.save_bytes_to_cache(data, f"frame.{state.frame.format.lower()}",
                                                      get_upload_folder())
        image = Image.open(io.BytesIO(data))
        phases = [(f"{pid} - {name} [{n}]", pid) for n, (pid, name) in enumerate(state.phases, start=1)]
        ids = {"case_id": state.case_id, "base_id": state.base_id, "source": state.source,
               "prediction_id": state.prediction_id}
        return [
            ids, view.editor_value(cached, state.draft), gr.Radio(choices=phases, value=state.draft.phase),
            *(getattr(state.draft, name) or "" for name in TEXTS),
            gr.Dropdown(choices=state.sources, value=state.source if state.source in state.sources else None),
            view.status_html(state),
            view.history_html(state.history), view.history_image(image, state.history), gr.HTML(value="",
                                                                                                visible=False)]

    def prefill(self, ids: dict | None, source: str, request: gr.Request) -> list[Any]:
        """Replace the editor's content with the pre-fill ``source``; the base version stays."""
        self._actor(request)  # the role first: nobody else learns even what the tab expects
        if not ids:
            raise DomainError("Open a case first.")
        return self.open_case(ids["case_id"], request, source=source)

    def save(self, submit: bool, ids: dict | None, value: dict | None, phase: str | None, *texts: Any,
             request: gr.Request) -> list[Any]:
        actor = self._actor(request)
        if not ids:
            raise DomainError("Open a case first.")
        draft = GoZoneDraft(phase, view.box_of(value), *(t or None for t in texts))
        try:
            with self.services.db.session_scope() as session:
                saved = save_version(session, actor, ids["case_id"], draft, base_id=ids.get("base_id"),
                                     submit=submit, source=ids.get("source"),
                                     source_prediction_id=ids.get("prediction_id"))
                number = saved.version
        except EditConflict as conflict:
            gr.Warning(str(conflict))
            moved = dict(ids, base_id=conflict.current.id if conflict.current else ids.get("base_id"))
            return [moved, *[gr.skip()] * (EDITOR_OUTPUTS - 2), gr.HTML(value=view.conflict_html(conflict.current), visible=True)]
        gr.Info(f"Version {number} {'submitted for approval' if submit else 'saved as a draft'}.")
        return self.open_case(ids["case_id"], request)


def _layout() -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row():
        c["state_filter"] = gr.Radio([ALL, *STATES], value=ALL, label="Show", elem_id="annotate-state", scale=2)
        c["case"] = gr.Dropdown(label="Your cases", choices=[], elem_id="annotate-case", scale=3)
        c["source"] = gr.Dropdown(label="Pre-fill from", choices=[], elem_id="annotate-source", scale=2)
        c["load"] = gr.Button("Load pre-fill", elem_id="annotate-load", size="sm", scale=1)
    c["status"] = gr.HTML(elem_id="annotate-status")
    c["conflict"] = gr.HTML(elem_id="annotate-conflict", visible=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            c["editor"] = image_annotator(
                label="Go Zone: drag the box or its corners; draw a new one on empty frame; wheel to zoom",
                label_list=["Go Zone"], label_colors=[view.EDIT_COLOR], single_box=True, sources=[],
                image_type="pil", show_clear_button=False, show_remove_button=True, use_default_label=True,
                disable_edit_boxes=True, show_download_button=False, height=560, elem_id="annotate-editor")
        with gr.Column(scale=2):
            c["phase"] = gr.Radio([], label="Phase [1-9]", elem_id="annotate-phase")
            c["texts"] = [gr.Textbox(label=label, lines=2, max_length=5000, elem_id=f"annotate-{name}")
                          for name, label in (("location", "Location (relative to landmarks)"),
                                              ("exposure", "Exposure (is visualisation adequate?)"),
                                              ("next_action", "Next action"),
                                              ("critical_risk", "Critical risk"))]
            with gr.Row():
                c["save"] = gr.Button("Save draft [Ctrl+S]", elem_id="annotate-save")
                c["submit"] = gr.Button("Submit for approval [Ctrl+Enter]", variant="primary",
                                        elem_id="annotate-submit")
    with gr.Accordion("History of this case", open=False):
        c["history"] = gr.HTML(elem_id="annotate-history")
        c["history_image"] = gr.Image(label="Boxes of each version", type="pil", format="jpeg", interactive=False,
                                      height=420,
                                      elem_id="annotate-history-image")
    with gr.Accordion("Assign cases (admin)", open=False, visible=False) as c["assign_box"]:
        with gr.Row():
            c["assign_dataset"] = gr.Textbox(label="Dataset (empty: all cases)", elem_id="annotate-assign-dataset")
            c["assign_users"] = gr.CheckboxGroup([], label="Annotators", elem_id="annotate-assign-users")
            c["assign_k"] = gr.Number(1, precision=0, minimum=1, label="Annotators per case (>1: agreement study)",
                                      elem_id="annotate-assign-k")
            c["assign_go"] = gr.Button("Assign", elem_id="annotate-assign")
        c["assign_result"] = gr.Markdown(elem_id="annotate-assign-result")
    return c


def build(services: Services) -> None:
    gr.HTML(annotate_key_help_html(), js_on_load=ANNOTATE_KEYS_JS,
            head=f"<style>{KEYS_CSS}{view.ANNOTATE_CSS}</style>", elem_id="annotate-keys")
    c = _layout()
    handlers = AnnotateHandlers(services)
    ids = gr.State(None)
    editor_outputs = [ids, c["editor"], c["phase"], *c["texts"], c["source"], c["status"], c["history"],
                      c["history_image"], c["conflict"]]
    edited = [ids, c["editor"], c["phase"], *c["texts"]]

    gr.on(None, user_action(handlers.populate), outputs=[c["case"], c["assign_box"], c["assign_users"]],
          show_progress="hidden").success(user_action(handlers.open_first), inputs=c["case"],
                                          outputs=editor_outputs)
    c["state_filter"].input(user_action(handlers.list_queue), inputs=c["state_filter"], outputs=c["case"])
    c["case"].input(user_action(handlers.open_case), inputs=c["case"], outputs=editor_outputs,
                    api_name="annotate_open")
    c["load"].click(user_action(handlers.prefill), inputs=[ids, c["source"]], outputs=editor_outputs)

    # Gradio finds the request by the parameter's annotation, so the inputs are spelled out.
    @user_action
    def save_draft(ids: dict | None, value: dict | None, phase: str | None, location: str, exposure: str,
                   next_action: str, critical_risk: str, request: gr.Request) -> list[Any]:
        return handlers.save(False, ids, value, phase, location, exposure, next_action, critical_risk,
                             request=request)

    @user_action
    def submit(ids: dict | None, value: dict | None, phase: str | None, location: str, exposure: str,
               next_action: str, critical_risk: str, request: gr.Request) -> list[Any]:
        return handlers.save(True, ids, value, phase, location, exposure, next_action, critical_risk,
                             request=request)

    c["save"].click(save_draft, inputs=edited, outputs=editor_outputs, api_name="annotate_save")
    c["submit"].click(submit, inputs=edited, outputs=editor_outputs, api_name="annotate_submit")
    c["assign_go"].click(user_action(handlers.assign),
                         inputs=[c["assign_dataset"], c["assign_users"], c["assign_k"]],
                         outputs=c["assign_result"])
