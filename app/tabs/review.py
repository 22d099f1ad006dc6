"""The Review tab: a reviewer's blind queue, one item at a time, scored with the mouse or the keyboard.

What reaches the browser is the BlindItem only: the frame (re-encoded by Gradio, never a stored path or
hash), the question and the outputs under their letters in one neutral style. The per-user state is the
opaque item token. Every handler checks the reviewer role on the server (``review.judging`` checks again,
with ownership). Time spent is measured in the browser, from the moment an item is put on screen to the
press of Submit (``performance.now()``, see app/keyboard.py), and stored with the judgment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app import auth, render
from app.errors import user_action
from app.keyboard import (
    ELAPSED_FIRST_JS,
    KEYS_CSS,
    LETTERS,
    REVIEW_KEYS_JS,
    STAMP_SHOWN_JS,
    flag_label,
    key_help_html,
)
from app.services import Services
from db.errors import DomainError
from db.users import Actor
from review.judging import frame_for, reveal, skip_item, submit_judgment
from review.queue import Screen, my_studies, screen

TITLE = "Review"
ROLES = frozenset({"reviewer"})
LEVELS = (1, 2, 3)
LEVEL_CHOICES = [("correct", "correct"), ("wrong", "wrong"), ("n.a.", "na")]
CORRECT_CHOICES = [("1 - correct", 1), ("0 - error / hallucination", 0)]
STATE_TEXT = {"open": "open", "judged": "judged", "skipped": "skipped"}


@dataclass
class Slot:
    """The components of one lettered output: its panel and its ratings."""

    panel_column: gr.Column
    panel: gr.HTML
    column: gr.Column
    correct: gr.Radio
    levels: list[gr.Radio]
    flags: gr.CheckboxGroup

    def outputs(self) -> list[Any]:
        return [self.panel_column, self.panel, self.column, self.correct, *self.levels, self.flags]

    def inputs(self) -> list[Any]:
        return [self.correct, *self.levels, self.flags]


@dataclass
class View:
    """Every component a shown item updates, in the order of ``outputs()``."""

    token: gr.State
    progress: gr.HTML
    items: gr.Dropdown
    frame: gr.Image
    question: gr.HTML
    status: gr.HTML
    revealed: gr.HTML
    reveal_button: gr.Button
    best: gr.Radio
    comment: gr.Textbox
    reason: gr.Textbox
    slots: list[Slot]

    def outputs(self) -> list[Any]:
        fixed = [self.token, self.progress, self.items, self.frame, self.question, self.status, self.revealed,
                 self.reveal_button, self.best, self.comment, self.reason]
        return fixed + [c for slot in self.slots for c in slot.outputs()]


def _progress_html(shown: Screen) -> str:
    p = shown.progress
    return (f'<div class="sr-progress">Progress: <b>{p.done} / {p.assigned}</b> judged'
            f"{f' · {p.skipped} skipped' if p.skipped else ''}</div>")


def _question_html(shown: Screen) -> str:
    if shown.item is None:
        closed = " The study is closed." if shown.study.status == "closed" else ""
        return (f'<div class="sr-question">No open item left in this study.{closed} '
                "Press <kbd>p</kbd> to revise your last item or pick one from your items.</div>")
    entry = shown.entry
    return (f'<div class="sr-question">Item {entry.position} of {len(shown.entries)} '
            f"({STATE_TEXT[entry.state]})<br><b>{render.esc(shown.item.question)}</b></div>")


def _status_html(shown: Screen, stored: bool = False) -> str:
    if shown.judgment is not None:
        verb = "Stored" if stored else "Already judged"
        return (f'<div class="sr-status">{verb}: revision {shown.judgment["revision"]}. Change anything and '
                "submit again to revise it (the latest revision counts), or press <kbd>n</kbd> for the next "
                "item.</div>")
    return ""


def _items_dropdown(shown: Screen) -> gr.Dropdown:
    """The reviewer's judged and skipped items (to revise or return to), plus the one on screen."""
    current = shown.entry.token if shown.entry else None
    choices = [(f"#{e.position} · {STATE_TEXT[e.state]}", e.token) for e in shown.entries
               if e.state != "open" or e.token == current]
    return gr.Dropdown(choices=choices, value=current)


def _slot_updates(shown: Screen, letter: str) -> list[Any]:
    outputs = {o.letter: o for o in shown.item.outputs} if shown.item else {}
    output = outputs.get(letter)
    if output is None:
        return [gr.Column(visible=False), "", gr.Column(visible=False), gr.Radio(value=None),
                *(gr.Radio(value=None) for _ in LEVELS), gr.CheckboxGroup(value=[])]
    rating = ((shown.judgment or {}).get("ratings") or {}).get(letter, {})
    marks = {int(k): v for k, v in (rating.get("levels") or {}).items()}
    task_outputs = shown.item.outputs
    panel = render.blind_panel_html(output, boxes=any(o.boxes for o in task_outputs),
                                    rationale=any(o.rationale for o in task_outputs))
    return [gr.Column(visible=True), panel, gr.Column(visible=True), gr.Radio(value=rating.get("correct")),
            *(gr.Radio(value=marks.get(n), visible=n in shown.study.levels) for n in LEVELS),
            gr.CheckboxGroup(choices=[(flag_label(f), f) for f in shown.study.flags],
                             value=list(rating.get("flags") or []))]


def _view(shown: Screen, image: Any, *, stored: bool = False) -> list[Any]:
    """The updates of every component in View order for ``shown`` and its drawn frame."""
    item, judgment = shown.item, shown.judgment or {}
    letters = [o.letter for o in item.outputs] if item else []
    best = gr.Radio(choices=[*letters, ("none acceptable", "none")],
                    value=(judgment.get("best") or "none") if judgment else None)
    reveal_visible = shown.study.reveal_after_submit and shown.judgment is not None
    fixed = [item.token if item else None, _progress_html(shown), _items_dropdown(shown), image,
             _question_html(shown), _status_html(shown, stored), "", gr.Button(visible=reveal_visible), best,
             judgment.get("comment") or "", ""]
    return fixed + [u for letter in LETTERS for u in _slot_updates(shown, letter)]


def _ratings(values: tuple[Any, ...]) -> dict[str, dict[str, Any]]:
    """{letter: rating} from the slots' values (correct, level 1-3, flags per letter); letters with nothing
    set are left out, so the domain names any output of the item that is not rated."""
    ratings = {}
    for index, letter in enumerate(LETTERS):
        correct, *marks, flags = values[index * 5:(index + 1) * 5]  # Slot.inputs() order
        if correct is None and not any(marks) and not flags:
            continue
        ratings[letter] = {"correct": None if correct is None else int(correct),
                           "levels": {n: m for n, m in zip(LEVELS, marks, strict=True) if m},
                           "flags": list(flags or [])}
    return ratings


class ReviewHandlers:
    """The tab's event handlers over one process's services (no per-user state here)."""

    def __init__(self, services: Services, view_size: int) -> None:
        self.services = services
        self.view_size = view_size  # how many components a shown item updates

    def _actor(self, request: gr.Request) -> Actor:
        return auth.tab_actor(self.services, request, ROLES)

    def _shown(self, actor: Actor, study_id: int, token: str | None = None, step: int = 0,
               stored: bool = False) -> list[Any]:
        """One session: the screen, and the frame behind its opaque frame token with the boxes drawn. After a
        submit the item stays on screen, so its frame is not drawn and sent again (the costliest part)."""
        with self.services.db.session_scope() as session:
            shown = screen(session, actor, int(study_id), token, step=step)
            if stored and shown.item is not None and shown.item.token == token:
                return _view(shown, gr.skip(), stored=stored)
            frame = frame_for(session, actor, shown.item.frame) if shown.item else None
            image = self.services.frames.open_image(frame) if frame is not None else None
        drawn = render.blind_image(image, shown.item.outputs) if image is not None else None
        return _view(shown, drawn, stored=stored)

    def populate(self, request: gr.Request) -> Any:
        """On page load: the studies this reviewer reviews (nothing for anyone else)."""
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return gr.skip()
        with self.services.db.session_scope() as session:
            studies = my_studies(session, actor)
        choices = [(s.name + (" (closed)" if s.status == "closed" else ""), s.id) for s in studies]
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None,
                           info=None if choices else "You are not a reviewer of any study yet.")

    def open_study(self, request: gr.Request, study_id: int | None) -> list[Any]:
        """The next open item of the study: where the reviewer left off."""
        if study_id is None:
            return [gr.skip()] * self.view_size
        return self._shown(self._actor(request), study_id)

    def open_item(self, request: gr.Request, study_id: int | None, token: str | None) -> list[Any]:
        """One of the reviewer's own items, chosen from their list (to revise it or return to it)."""
        if study_id is None or not token:
            return [gr.skip()] * self.view_size
        return self._shown(self._actor(request), study_id, token)

    def previous(self, request: gr.Request, study_id: int | None, token: str | None) -> list[Any]:
        actor = self._actor(request)
        if study_id is None:
            raise DomainError("Choose a study first.")
        return self._shown(actor, study_id, token, step=-1)

    def submit(self, request: gr.Request, elapsed_ms: float | None, study_id: int | None, token: str | None,
               best: str | None, comment: str | None, *values: Any) -> list[Any]:
        """Store the judgment (a new revision when one exists) and show the item as judged."""
        actor = self._actor(request)
        if study_id is None or not token:
            raise DomainError("There is no item on screen to submit.")
        if best is None:
            raise DomainError("Pick the best output (1-5) or none acceptable (0) first.")
        spent = None if elapsed_ms is None or elapsed_ms < 0 else round(elapsed_ms)
        with self.services.db.session_scope() as session:
            submit_judgment(session, actor, token, None if best == "none" else best, _ratings(values),
                            comment, time_spent_ms=spent)
        return self._shown(actor, study_id, token, stored=True)

    def skip(self, request: gr.Request, study_id: int | None, token: str | None, reason: str) -> list[Any]:
        """Set the item aside with a reason and show the next open one."""
        actor = self._actor(request)
        if study_id is None or not token:
            raise DomainError("There is no item on screen to skip.")
        with self.services.db.session_scope() as session:
            skip_item(session, actor, token, reason)
        return self._shown(actor, study_id)

    def reveal(self, request: gr.Request, token: str | None) -> str:
        """Which model wrote which output: only after the judgment is stored and when the study allows."""
        actor = self._actor(request)
        if not token:
            raise DomainError("There is no item on screen.")
        with self.services.db.session_scope() as session:
            names = reveal(session, actor, token)
        rows = "".join(f"<li><b>{render.esc(letter)}</b>: {render.esc(name)}</li>"
                       for letter, name in names.items())
        return f'<div class="sr-reveal">Revealed after your judgment:<ul>{rows}</ul></div>'


def _panel(letter: str) -> tuple[gr.Column, gr.HTML]:
    with gr.Column(visible=False, min_width=260, elem_classes=["sr-slot", f"sr-slot-{letter}"]) as column:
        panel = gr.HTML(elem_id=f"review-panel-{letter}", css_template=render.BLIND_CSS)
    return column, panel


def _rubric(letter: str, number: int) -> tuple[gr.Column, gr.Radio, list[gr.Radio], gr.CheckboxGroup]:
    with gr.Column(visible=False, min_width=260, elem_id=f"review-slot-{letter}",
                   elem_classes=["sr-slot", "sr-rubric", f"sr-slot-{letter}"]) as column:
        correct = gr.Radio(CORRECT_CHOICES, label=f"{letter}: factually correct? [Shift+{number}]",
                           elem_id=f"review-correct-{letter}")
        levels = [gr.Radio(LEVEL_CHOICES, label=f"{letter}: {render.LEVEL_NAMES[n]} [{n + 6}]",
                           elem_id=f"review-l{n}-{letter}") for n in LEVELS]
        flags = gr.CheckboxGroup([], label=f"{letter}: flags", elem_id=f"review-flags-{letter}")
    return column, correct, levels, flags


def _slots() -> list[Slot]:
    """Outputs side by side, and their ratings side by side below them (one column per letter)."""
    with gr.Row(equal_height=False):
        panels = [_panel(letter) for letter in LETTERS]
    with gr.Row(equal_height=False):
        rubrics = [_rubric(letter, number) for number, letter in enumerate(LETTERS, start=1)]
    return [Slot(*panel, *rubric) for panel, rubric in zip(panels, rubrics, strict=True)]


def _layout() -> tuple[gr.Dropdown, View, dict[str, gr.Button]]:
    with gr.Row():
        study = gr.Dropdown(label="Study", choices=[], elem_id="review-study", scale=2)
        items = gr.Dropdown(label="Your items (judged or skipped: revise or return)", choices=[],
                            elem_id="review-items", scale=1)
        progress = gr.HTML(elem_id="review-progress")
    question = gr.HTML(elem_id="review-question")
    frame = gr.Image(label="Frame", type="pil", interactive=False, height=520, elem_id="review-frame")
    slots = _slots()
    with gr.Row():
        best = gr.Radio([], label="Best output [1-5; 0 none acceptable]", elem_id="review-best", scale=2)
        comment = gr.Textbox(label="Comment (optional) [/]", lines=2, elem_id="review-comment", scale=2)
    with gr.Row():
        buttons = {name: gr.Button(text, variant=variant, elem_id=f"review-{name}", size="sm")
                   for name, text, variant in (("submit", "Submit [Enter]", "primary"),
                                               ("next", "Next open item [n]", "secondary"),
                                               ("prev", "Previous item [p]", "secondary"))}
        reason = gr.Textbox(label="Skip reason [s, then Enter]", lines=1, elem_id="review-skip-reason",
                            scale=2)
        buttons["skip"] = gr.Button("Skip", elem_id="review-skip", size="sm")
        buttons["reveal"] = gr.Button("Reveal models [r]", elem_id="review-reveal", size="sm", visible=False)
    status = gr.HTML(elem_id="review-status")
    revealed = gr.HTML(elem_id="review-revealed")
    view = View(gr.State(None), progress, items, frame, question, status, revealed, buttons["reveal"], best,
                comment, reason, slots)
    return study, view, buttons


def build(services: Services) -> None:
    gr.HTML(key_help_html(), js_on_load=REVIEW_KEYS_JS, head=f"<style>{KEYS_CSS}</style>",
            elem_id="review-keys")
    study, view, buttons = _layout()
    outputs = view.outputs()
    handlers = ReviewHandlers(services, len(outputs))
    elapsed = gr.Number(visible=False)
    rubric = [c for slot in view.slots for c in slot.inputs()]

    def shows(event: Any) -> None:
        event.success(None, js=STAMP_SHOWN_JS)  # the time spent on an item counts from here

    shows(gr.on(None, user_action(handlers.populate), outputs=study, show_progress="hidden").success(
        user_action(handlers.open_study), inputs=study, outputs=outputs))
    shows(study.input(user_action(handlers.open_study), inputs=study, outputs=outputs))
    shows(buttons["next"].click(user_action(handlers.open_study), inputs=study, outputs=outputs))
    shows(view.items.input(user_action(handlers.open_item), inputs=[study, view.items], outputs=outputs,
                           api_name="review_open_item"))
    shows(buttons["prev"].click(user_action(handlers.previous), inputs=[study, view.token], outputs=outputs))
    buttons["submit"].click(user_action(handlers.submit),
                            inputs=[elapsed, study, view.token, view.best, view.comment, *rubric],
                            outputs=outputs, js=ELAPSED_FIRST_JS, api_name="review_submit")
    for trigger in (buttons["skip"].click, view.reason.submit):
        shows(trigger(user_action(handlers.skip), inputs=[study, view.token, view.reason], outputs=outputs))
    buttons["reveal"].click(user_action(handlers.reveal), inputs=view.token, outputs=view.revealed,
                            api_name="review_reveal")
