"""The Teach tab: educators build collections of cases and present them step by step (keyboard-driven,
full-screen friendly); residents take quizzes, drawing the Go Zone; both read the results (residents their own
only). Layout and wiring here; the handlers, with every role check, are ``app.teach_handlers``.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from app import teach_render as view
from app.errors import user_action
from app.services import Services
from app.teach_handlers import ALL, ANY, FILTERS, POPULATED, ROLES, TeachHandlers

TITLE = "Teach"
__all__ = ["ROLES", "TITLE", "TeachHandlers", "build", "collect_button"]
GO_ZONE = "Go Zone"

# The presentation keys click the stage's own buttons: every key goes through the same server-side checks.
PRESENT_KEYS_JS = """
(() => {
  if (window.__srTeachKeys) return;
  window.__srTeachKeys = true;
  const KEYS = {ArrowRight: 'next-step', ' ': 'next-step', ArrowLeft: 'prev-step', PageDown: 'next-case',
                n: 'next-case', PageUp: 'prev-case', p: 'prev-case', Home: 'first-step', End: 'last-step',
                f: 'fullscreen'};
  document.addEventListener('keydown', (e) => {
    const button = document.querySelector('#teach-next-step');
    if (!button || button.offsetParent === null) return;  // the stage is not on screen
    const t = e.target;
    if (t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && !['radio', 'checkbox'].includes(t.type))))
      return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const id = KEYS[e.key];
    if (!id) return;
    const el = document.querySelector('#teach-' + id);
    if (el && !el.disabled) { el.click(); e.preventDefault(); }
  });
})();
"""
FULLSCREEN_JS = """() => {
  const stage = document.querySelector('#teach-stage');
  if (document.fullscreenElement) document.exitFullscreen();
  else if (stage && stage.requestFullscreen) stage.requestFullscreen().catch(() => {});
}"""


def collect_button(services: Services, case: gr.components.Component) -> None:
    """A one-click "add to teaching collection" row for another tab, shown to educators only. ``case`` is
    that tab's component whose value is a case id (the Compare tab's case dropdown)."""
    handlers = TeachHandlers(services)
    with gr.Row(visible=False) as row:
        target = gr.Dropdown(label="Teaching collection", choices=[], elem_id="teach-collect-target", scale=2)
        button = gr.Button("Add to collection", elem_id="teach-collect", size="sm", scale=1)
        status = gr.HTML(elem_id="teach-collect-status")
    gr.on(None, user_action(handlers.collect_choices), outputs=[row, target], show_progress="hidden")
    button.click(user_action(handlers.collect), inputs=[target, case], outputs=status)


# --- layout -------------------------------------------------------------------------------------------------

def _collections_layout() -> dict[str, Any]:
    c: dict[str, Any] = {}
    with gr.Row():
        c["select"] = gr.Dropdown(label="Your collections", choices=[], elem_id="teach-coll-select", scale=2)
        c["new_name"] = gr.Textbox(label="New collection", placeholder="name", elem_id="teach-coll-new",
                                   scale=2)
        c["create"] = gr.Button("Create", elem_id="teach-coll-create", size="sm", scale=1)
    with gr.Row():
        c["name"] = gr.Textbox(label="Name", elem_id="teach-coll-name", scale=2)
        c["presenter"] = gr.Dropdown(label="Presenting model (its reasoning is revealed level by level)",
                                     choices=[""], elem_id="teach-coll-presenter", scale=2)
        c["shared"] = gr.Checkbox(label="Shared with residents (quiz)", elem_id="teach-coll-shared", scale=1)
    c["description"] = gr.Textbox(label="Description", lines=2, elem_id="teach-coll-description")
    with gr.Row():
        c["save"] = gr.Button("Save collection", variant="primary", elem_id="teach-coll-save", size="sm")
        c["delete"] = gr.Button("Delete collection", variant="stop", elem_id="teach-coll-delete", size="sm")
    with gr.Accordion("Add cases: search by dataset, procedure, phase, split, tag, or a case key", open=True):
        with gr.Row():
            c["filters"] = [gr.Dropdown(label="Reference phase" if name == "phase" else name.capitalize(),
                                        choices=[ANY], value=ANY, elem_id=f"teach-filter-{name}",
                                        min_width=120)
                            for name in FILTERS]
        with gr.Row():
            c["cases"] = gr.Dropdown(label="Matching cases", choices=[], multiselect=True,
                                     elem_id="teach-cases", scale=3)
            c["add"] = gr.Button("Add selected", elem_id="teach-add-selected", size="sm", scale=1)
            c["add_all"] = gr.Button("Add all matching", elem_id="teach-add-all", size="sm", scale=1)
        with gr.Row():
            c["key"] = gr.Textbox(label="Case key", placeholder="demo/demo_vid01/000500",
                                  elem_id="teach-case-key", scale=3)
            c["add_key"] = gr.Button("Add by key", elem_id="teach-add-key", size="sm", scale=1)
    c["status"] = gr.HTML(elem_id="teach-coll-status")
    c["items"] = gr.Dataframe(label="Cases in order", interactive=False, elem_id="teach-items")
    with gr.Row():
        c["item"] = gr.Dropdown(label="Case", choices=[], elem_id="teach-item", scale=2)
        c["up"] = gr.Button("Move up", elem_id="teach-item-up", size="sm", scale=1)
        c["down"] = gr.Button("Move down", elem_id="teach-item-down", size="sm", scale=1)
        c["remove"] = gr.Button("Remove", elem_id="teach-item-remove", size="sm", scale=1)
    with gr.Row():
        c["notes"] = gr.Textbox(label="Teaching notes (presenter only)", lines=3, elem_id="teach-item-notes")
        c["point"] = gr.Textbox(label="Teaching point (revealed last)", lines=3, elem_id="teach-item-point")
    c["save_notes"] = gr.Button("Save notes", elem_id="teach-item-save", size="sm")
    return c


def _present_layout() -> dict[str, Any]:
    p: dict[str, Any] = {}
    with gr.Row():
        p["collection"] = gr.Dropdown(label="Collection", choices=[], elem_id="teach-present-collection",
                                      scale=2)
        p["model"] = gr.Dropdown(label="Presenting model (empty: the collection's)", choices=[""], value="",
                                 elem_id="teach-present-model", scale=2)
        p["start"] = gr.Button("Start", variant="primary", elem_id="teach-start", scale=1)
    with gr.Column(elem_id="teach-stage"):
        p["header"] = gr.HTML(elem_id="teach-header")
        with gr.Row():
            p["buttons"] = {action: gr.Button(text, elem_id=f"teach-{action.replace('_', '-')}", size="sm")
                            for action, text in (("prev_case", "Previous case [PageUp]"),
                                                 ("prev_step", "Back [←]"), ("first_step", "Question [Home]"),
                                                 ("next_step", "Reveal next [→ / Space]"),
                                                 ("last_step", "Reveal all [End]"),
                                                 ("next_case", "Next case [PageDown]"))}
            p["fullscreen"] = gr.Button("Full screen [f]", elem_id="teach-fullscreen", size="sm")
        with gr.Row(equal_height=False):
            p["image"] = gr.Image(label="Frame", type="pil", interactive=False, elem_id="teach-image",
                                  scale=3, buttons=[])
            p["body"] = gr.HTML(elem_id="teach-body", min_height=200)
    with gr.Accordion("Presenter notes", open=False):
        p["notes"] = gr.HTML(elem_id="teach-notes")
    gr.HTML(view.key_help_html(), js_on_load=PRESENT_KEYS_JS, elem_id="teach-keys")
    p["state"] = gr.State(None)
    return p


def _quiz_layout() -> dict[str, Any]:
    q: dict[str, Any] = {}
    with gr.Row():
        q["collection"] = gr.Dropdown(label="Quiz", choices=[], elem_id="teach-quiz-collection", scale=3)
        q["start"] = gr.Button("Start", variant="primary", elem_id="teach-quiz-start", scale=1)
    q["question"] = gr.HTML(elem_id="teach-quiz-question")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            # One box, labelled Go Zone from the start; no upload: the frame is the case's.
            q["canvas"] = image_annotator(label="Draw the Go Zone", label_list=[GO_ZONE],
                                          label_colors=[view.RESIDENT_COLOR], use_default_label=True,
                                          single_box=True, sources=None, image_type="pil",
                                          show_clear_button=False, show_download_button=False, height=520,
                                          elem_id="teach-quiz-canvas")
        with gr.Column(scale=2):
            q["phase"] = gr.Radio([], label="Phase", elem_id="teach-quiz-phase")
            q["next_action"] = gr.Textbox(label="Next action (optional)", lines=2,
                                          elem_id="teach-quiz-next-action")
            q["risk"] = gr.Textbox(label="Critical risk (optional)", lines=2, elem_id="teach-quiz-risk")
            with gr.Row():
                q["submit"] = gr.Button("Submit", variant="primary", elem_id="teach-quiz-submit")
                q["prev"] = gr.Button("Previous case", elem_id="teach-quiz-prev", size="sm")
                q["next"] = gr.Button("Next case", elem_id="teach-quiz-next", size="sm")
    with gr.Row(equal_height=False):
        q["feedback_image"] = gr.Image(label="Your Go Zone and the expert's (dashed)", type="pil",
                                       interactive=False, visible=False, elem_id="teach-quiz-feedback-image")
        q["feedback"] = gr.HTML(elem_id="teach-quiz-feedback")
    q["state"] = gr.State(None)
    return q


def _results_layout() -> dict[str, Any]:
    r: dict[str, Any] = {}
    with gr.Row():
        r["resident"] = gr.Dropdown(label="Resident", choices=[ALL], value=ALL,
                                    elem_id="teach-results-resident")
        r["collection"] = gr.Dropdown(label="Collection", choices=[(ALL, 0)], value=0,
                                      elem_id="teach-results-collection")
        r["refresh"] = gr.Button("Show results", variant="primary", elem_id="teach-results-refresh",
                                 size="sm")
    with gr.Row():
        r["time"] = gr.Plot(label="Score over time", elem_id="teach-plot-time")
        r["cases_plot"] = gr.Plot(label="Hardest cases", elem_id="teach-plot-cases")
    r["confusion"] = gr.Plot(label="Phase confusions", elem_id="teach-plot-confusion")
    r["residents"] = gr.Dataframe(label="Per resident", interactive=False, elem_id="teach-results-residents")
    r["cases"] = gr.Dataframe(label="Per case (first attempts)", interactive=False,
                              elem_id="teach-results-cases")
    r["attempts"] = gr.Dataframe(label="Attempts", interactive=False, elem_id="teach-results-attempts")
    r["attempt"] = gr.Dropdown(label="Open an attempt", choices=[], elem_id="teach-results-attempt")
    with gr.Row(equal_height=False):
        r["image"] = gr.Image(label="Attempt", type="pil", interactive=False, visible=False,
                              elem_id="teach-results-image")
        r["feedback"] = gr.HTML(elem_id="teach-results-feedback")
    return r


def _wire_collections(h: TeachHandlers, c: dict[str, Any]) -> None:
    shown = [c["name"], c["description"], c["shared"], c["presenter"], c["items"], c["item"], c["notes"],
             c["point"], c["status"]]
    c["select"].input(user_action(h.open_collection), inputs=c["select"], outputs=shown)
    for trigger in (c["create"].click, c["new_name"].submit):
        trigger(user_action(h.create_collection), inputs=c["new_name"], outputs=[c["select"], c["new_name"],
                                                                                 *shown])
    c["save"].click(user_action(h.save_collection),
                    inputs=[c["select"], c["name"], c["description"], c["shared"], c["presenter"]],
                    outputs=[c["select"], *shown])
    c["delete"].click(user_action(h.delete_collection), inputs=c["select"], outputs=[c["select"], *shown])
    for dropdown in c["filters"]:
        dropdown.input(user_action(h.list_cases), inputs=c["filters"], outputs=c["cases"])
    c["add"].click(user_action(h.add_selected), inputs=[c["select"], c["cases"]], outputs=shown)
    c["add_all"].click(user_action(h.add_matching), inputs=[c["select"], *c["filters"]], outputs=shown)
    for trigger in (c["add_key"].click, c["key"].submit):
        trigger(user_action(h.add_by_key), inputs=[c["select"], c["key"]], outputs=shown)
    item = [c["select"], c["item"]]
    c["item"].input(user_action(h.open_item), inputs=item, outputs=shown)
    c["save_notes"].click(user_action(h.save_notes), inputs=[*item, c["notes"], c["point"]], outputs=shown)
    c["up"].click(user_action(h.move_up), inputs=item, outputs=shown)
    c["down"].click(user_action(h.move_down), inputs=item, outputs=shown)
    c["remove"].click(user_action(h.remove_item), inputs=item, outputs=shown)


def _wire_present(h: TeachHandlers, p: dict[str, Any]) -> None:
    slide = [p["state"], p["header"], p["image"], p["body"], p["notes"]]
    p["start"].click(user_action(h.start), inputs=[p["collection"], p["model"]], outputs=slide)
    for action, button in p["buttons"].items():
        name = gr.State(action)
        button.click(user_action(h.step), inputs=[p["state"], name], outputs=slide, show_progress="hidden",
                     trigger_mode="always_last")
    p["fullscreen"].click(None, js=FULLSCREEN_JS)


def _wire_quiz(h: TeachHandlers, q: dict[str, Any]) -> None:
    shown = [q["state"], q["question"], q["canvas"], q["phase"], q["next_action"], q["risk"], q["feedback"],
             q["feedback_image"]]
    q["start"].click(user_action(h.quiz_start), inputs=q["collection"], outputs=shown)
    q["next"].click(user_action(h.quiz_next), inputs=q["state"], outputs=shown)
    q["prev"].click(user_action(h.quiz_previous), inputs=q["state"], outputs=shown)
    q["submit"].click(user_action(h.quiz_submit),
                      inputs=[q["state"], q["canvas"], q["phase"], q["next_action"], q["risk"]],
                      outputs=[q["feedback"], q["feedback_image"]], api_name="teach_quiz_submit")


def _wire_results(h: TeachHandlers, r: dict[str, Any], tab: gr.Tab) -> None:
    outputs = [r["time"], r["cases_plot"], r["confusion"], r["residents"], r["cases"], r["attempts"],
               r["attempt"]]
    for trigger in (r["refresh"].click, tab.select):
        trigger(user_action(h.results), inputs=[r["resident"], r["collection"]], outputs=outputs)
    r["attempt"].input(user_action(h.open_attempt), inputs=r["attempt"], outputs=[r["feedback"], r["image"]])


def build(services: Services) -> None:
    handlers = TeachHandlers(services)
    gr.HTML("", head=f"<style>{view.TEACH_CSS}</style>", elem_id="teach-style", padding=False)
    with gr.Tabs(elem_id="teach-tabs"):
        with gr.Tab("Present", id="teach-present-tab", visible=False) as present_tab:
            p = _present_layout()
        with gr.Tab("Collections", id="teach-collections-tab", visible=False) as collections_tab:
            c = _collections_layout()
        with gr.Tab("Quiz", id="teach-quiz-tab", visible=False) as quiz_tab:
            q = _quiz_layout()
        with gr.Tab("Results", id="teach-results-tab", visible=False) as results_tab:
            r = _results_layout()
    populated = [present_tab, collections_tab, quiz_tab, results_tab, p["collection"], c["select"],
                 q["collection"], *c["filters"], c["presenter"], p["model"], r["resident"], r["collection"]]
    assert len(populated) == POPULATED
    gr.on(None, user_action(handlers.populate), outputs=populated, show_progress="hidden")
    _wire_collections(handlers, c)
    _wire_present(handlers, p)
    _wire_quiz(handlers, q)
    _wire_results(handlers, r, results_tab)
