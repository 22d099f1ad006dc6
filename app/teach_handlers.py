"""The Teach tab's event handlers: educators' collections, presentation and results; residents' quiz and
own results. Each handler checks the role on the server (``auth.tab_actor``; the services check again, with
ownership), opens one session, calls ``review.teaching`` and renders with ``app.teach_render``. Per-user state
holds ids only. A resident's quiz question carries the frame, the question and the phase choices: the expert
answer and the model outputs go out only in the reply to their submitted attempt.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from app import auth, teach_charts
from app import teach_render as view
from app.services import Services
from db.cases import CaseFilter
from db.errors import DomainError
from db.users import Actor
from models.compare import filter_options, matching_cases
from review.teaching import collections as col
from review.teaching.presentation import ACTIONS, Place, Slide, move, present
from review.teaching.quiz import attempt_feedback, quiz_question, submit_attempt
from review.teaching.results import residents, teaching_results

ROLES = frozenset({"educator", "resident"})
EDUCATOR, RESIDENT = frozenset({"educator"}), frozenset({"resident"})
ANY = "(any)"
ALL = "(all)"
FILTERS = ("dataset", "procedure", "phase", "split", "tag")
POPULATED = 4 + 3 + len(FILTERS) + 4  # components that populate() updates: see app/tabs/teach.py build()


def _none(value: Any) -> Any:
    return None if value in (None, "", ANY, ALL) else value


def _case_filter(dataset: str, procedure: str, phase: str, split: str, tag: str) -> CaseFilter:
    return CaseFilter(dataset=_none(dataset), procedure=_none(procedure), phase=_none(phase),
                      split=_none(split),
                      tags=(tag,) if _none(tag) else ())


def _collection_choices(infos: list[col.CollectionInfo], *, quiz: bool = False) -> list[tuple[str, int]]:
    def label(info: col.CollectionInfo) -> str:
        if quiz:
            return f"{info.name} ({info.items} cases, by {info.owner})"
        sharing = "shared" if info.shared else "private"
        if not info.mine:
            return f"{info.name} (by {info.owner})"
        return f"{info.name} ({info.items} cases, {sharing})"
    return [(label(i), i.id) for i in infos if i.items or not quiz]


class TeachHandlers:
    """The tab's event handlers over one process's services (no per-user state here)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _actor(self, request: gr.Request, roles: frozenset[str] = ROLES) -> Actor:
        return auth.tab_actor(self.services, request, roles)

    # --- page load ---------------------------------------------------------------------------------------

    def populate(self, request: gr.Request) -> list[Any]:
        """Sub-tabs by role and the lists each role may see, in ``Layout.populated()`` order (nothing at all
        for other roles)."""
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return [gr.skip()] * POPULATED
        educator = actor.has("educator")
        with self.services.db.session_scope() as session:
            infos = col.visible_collections(session, actor)
            options = filter_options(session) if educator else None
            models = col.presenter_choices(session) if educator else []
            people = residents(session, actor) if educator else []
        tabs = [gr.Tab(visible=educator), gr.Tab(visible=educator), gr.Tab(visible=actor.has("resident")),
                gr.Tab(visible=True)]
        quiz = gr.Dropdown(choices=_collection_choices(infos,
                                                       quiz=True)) if actor.has("resident") else gr.skip()
        if not educator:
            return [*tabs, gr.skip(), gr.skip(), quiz, *[gr.skip()] * len(FILTERS), gr.skip(), gr.skip(),
                    gr.Dropdown(visible=False), gr.Dropdown(visible=False)]
        filters = [gr.Dropdown(choices=[ANY, *values], value=ANY) for values in
                   (options.datasets, options.procedures, options.phases, options.splits, options.tags)]
        mine = _collection_choices([i for i in infos if i.mine])
        return [*tabs, gr.Dropdown(choices=_collection_choices(infos)), gr.Dropdown(choices=mine), quiz,
                *filters,
                gr.Dropdown(choices=["", *models]), gr.Dropdown(choices=["", *models], value=""),
                gr.Dropdown(choices=[ALL, *people], value=ALL),
                gr.Dropdown(choices=[(ALL, 0), *_collection_choices(infos)], value=0)]

    # --- collections -------------------------------------------------------------------------------------

    def _collection_view(self, actor: Actor, collection_id: int | None, case_id: int | None = None,
                         message: str = "") -> list[Any]:
        """[name, description, shared, presenter, items table, item choice, notes, teaching point, status]."""
        if collection_id is None:
            empty = pd.DataFrame(columns=["#", "case", "reference phase", "teaching point"])
            return ["", "", False, "", empty, gr.Dropdown(choices=[], value=None), "", "", view.esc(message)]
        with self.services.db.session_scope() as session:
            collection = col.get_collection(session, actor, collection_id, edit=True)
            infos = {i.id: i for i in col.visible_collections(session, actor)}
            items = col.collection_items(session, actor, collection_id)
        info = infos[collection.id]
        table = pd.DataFrame([(i.position, i.case_key, i.reference_phase or "", i.teaching_point or "")
                              for i in items], columns=["#", "case", "reference phase", "teaching point"])
        chosen = next((i for i in items if i.case_id == case_id), items[0] if items else None)
        choices = [(f"{i.position}. {i.case_key}", i.case_id) for i in items]
        return [info.name, info.description or "", info.shared, info.presenter or "", table,
                gr.Dropdown(choices=choices, value=chosen.case_id if chosen else None),
                chosen.notes or "" if chosen else "", chosen.teaching_point or "" if chosen else "",
                view.esc(message)]

    def _mine(self, actor: Actor, selected: int | None) -> gr.Dropdown:
        with self.services.db.session_scope() as session:
            infos = [i for i in col.visible_collections(session, actor) if i.mine]
        return gr.Dropdown(choices=_collection_choices(infos), value=selected)

    def open_collection(self, request: gr.Request, collection_id: int | None) -> list[Any]:
        return self._collection_view(self._actor(request, EDUCATOR), collection_id)

    def create_collection(self, request: gr.Request, name: str) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        with self.services.db.session_scope() as session:
            collection_id = col.create_collection(session, actor, name).id
        return [self._mine(actor, collection_id), "",
                *self._collection_view(actor, collection_id, message="Collection created.")]

    def save_collection(self, request: gr.Request, collection_id: int | None, name: str, description: str,
                        shared: bool, presenter: str | None) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None:
            raise DomainError("Choose or create a collection first.")
        with self.services.db.session_scope() as session:
            col.update_collection(session, actor, collection_id, name=name, description=description,
                                  shared=bool(shared), presenter=presenter or "")
        return [self._mine(actor, collection_id), *self._collection_view(actor, collection_id,
                                                                         message="Saved.")]

    def delete_collection(self, request: gr.Request, collection_id: int | None) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None:
            raise DomainError("Choose a collection first.")
        with self.services.db.session_scope() as session:
            col.delete_collection(session, actor, collection_id)
        return [self._mine(actor, None), *self._collection_view(actor, None, message="Collection deleted.")]

    def list_cases(self, request: gr.Request, *filters: str) -> gr.Dropdown:
        self._actor(request, EDUCATOR)
        with self.services.db.session_scope() as session:
            cases = matching_cases(session, _case_filter(*filters))
        return gr.Dropdown(choices=[(key, case_id) for case_id, key in cases], value=[], multiselect=True,
                           info=f"{len(cases)} matching case{'s' if len(cases) != 1 else ''}")

    def add_selected(self, request: gr.Request, collection_id: int | None,
                     case_ids: list[int] | None) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None or not case_ids:
            raise DomainError("Choose a collection and at least one case.")
        with self.services.db.session_scope() as session:
            added = col.add_cases(session, actor, collection_id, case_ids)
        return self._collection_view(actor, collection_id, message=f"{added} case(s) added.")

    def add_matching(self, request: gr.Request, collection_id: int | None, *filters: str) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None:
            raise DomainError("Choose a collection first.")
        with self.services.db.session_scope() as session:
            found = [case_id for case_id, _ in matching_cases(session, _case_filter(*filters))]
            added = col.add_cases(session, actor, collection_id, found)
        return self._collection_view(actor, collection_id,
                                     message=f"{added} of {len(found)} matching case(s) added.")

    def add_by_key(self, request: gr.Request, collection_id: int | None, key: str) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None:
            raise DomainError("Choose a collection first.")
        with self.services.db.session_scope() as session:
            case_id = col.find_case(session, key).id
            col.add_to_collection(session, actor, collection_id, case_id)
        return self._collection_view(actor, collection_id, case_id, message=f"Added {key.strip()}.")

    def open_item(self, request: gr.Request, collection_id: int | None, case_id: int | None) -> list[Any]:
        return self._collection_view(self._actor(request, EDUCATOR), collection_id, case_id)

    def save_notes(self, request: gr.Request, collection_id: int | None, case_id: int | None, notes: str,
                   point: str) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None or case_id is None:
            raise DomainError("Choose a case of the collection first.")
        with self.services.db.session_scope() as session:
            col.set_item_notes(session, actor, collection_id, case_id, notes=notes, teaching_point=point)
        return self._collection_view(actor, collection_id, case_id, message="Notes saved.")

    def _move(self, request: gr.Request, collection_id: int | None, case_id: int | None,
              offset: int) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None or case_id is None:
            raise DomainError("Choose a case of the collection first.")
        with self.services.db.session_scope() as session:
            position = col.move_item(session, actor, collection_id, case_id, offset)
        return self._collection_view(actor, collection_id, case_id, message=f"Moved to place {position}.")

    def move_up(self, request: gr.Request, collection_id: int | None, case_id: int | None) -> list[Any]:
        return self._move(request, collection_id, case_id, -1)

    def move_down(self, request: gr.Request, collection_id: int | None, case_id: int | None) -> list[Any]:
        return self._move(request, collection_id, case_id, 1)

    def remove_item(self, request: gr.Request, collection_id: int | None, case_id: int | None) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None or case_id is None:
            raise DomainError("Choose a case of the collection first.")
        with self.services.db.session_scope() as session:
            col.remove_from_collection(session, actor, collection_id, case_id)
        return self._collection_view(actor, collection_id, message="Case removed.")

    # --- presentation ------------------------------------------------------------------------------------

    def _slide(self, actor: Actor, state: dict, action: str | None = None) -> list[Any]:
        """[state, header, image, body, notes] of the slide at ``state`` (after ``action``)."""
        place = Place(state["position"], state["step"])
        with self.services.db.session_scope() as session:
            if action is None:
                slide: Slide = present(session, actor, state["collection_id"], place, state.get("presenter"))
            else:
                slide = move(session, actor, state["collection_id"], place, action, state.get("presenter"))
            image = self.services.frames.open_image(slide.material.frame)
        state = {**state, "position": slide.position, "step": slide.revealed.step}
        return [state, view.slide_header_html(slide), view.slide_image(slide, image), view.slide_html(slide),
                view.notes_html(slide)]

    def start(self, request: gr.Request, collection_id: int | None, presenter: str | None) -> list[Any]:
        """The collection's first case at its question."""
        actor = self._actor(request, EDUCATOR)
        if collection_id is None:
            raise DomainError("Choose a collection to present.")
        state = {"collection_id": int(collection_id), "position": 1, "step": 0,
                 "presenter": presenter or None}
        return self._slide(actor, state)

    def step(self, request: gr.Request, state: dict | None, action: str) -> list[Any]:
        actor = self._actor(request, EDUCATOR)
        if not state:
            raise DomainError("Choose a collection and press Start first.")
        if action not in ACTIONS:
            raise DomainError("Unknown presentation step.")
        return self._slide(actor, state, action)

    # --- quiz --------------------------------------------------------------------------------------------

    def _question(self, actor: Actor, collection_id: int, position: int) -> list[Any]:
        """[state, question, canvas, phase, next action, critical risk, feedback, feedback image]."""
        with self.services.db.session_scope() as session:
            question = quiz_question(session, actor, collection_id, position)
            image = self.services.frames.open_image(question.frame)
        state = {"collection_id": question.collection_id, "position": question.position,
                 "case_id": question.case_id}
        return [state, view.question_html(question), {"image": image.convert("RGB"), "boxes": []},
                gr.Radio(choices=[(f"{p} - {name}", p) for p, name in question.phases],
                         value=None), "", "", "",
                gr.Image(value=None, visible=False)]

    def quiz_start(self, request: gr.Request, collection_id: int | None) -> list[Any]:
        actor = self._actor(request, RESIDENT)
        if collection_id is None:
            raise DomainError("Choose a quiz first.")
        return self._question(actor, int(collection_id), 1)

    def quiz_next(self, request: gr.Request, state: dict | None) -> list[Any]:
        actor = self._actor(request, RESIDENT)
        if not state:
            raise DomainError("Choose a quiz and press Start first.")
        return self._question(actor, state["collection_id"], state["position"] + 1)

    def quiz_previous(self, request: gr.Request, state: dict | None) -> list[Any]:
        actor = self._actor(request, RESIDENT)
        if not state:
            raise DomainError("Choose a quiz and press Start first.")
        return self._question(actor, state["collection_id"], state["position"] - 1)

    def quiz_submit(self, request: gr.Request, state: dict | None, canvas: dict | None, phase: str | None,
                    next_action: str, critical_risk: str) -> list[Any]:
        """Store and score the attempt; only now do the expert answer and the model's reasoning go out."""
        actor = self._actor(request, RESIDENT)
        if not state:
            raise DomainError("Choose a quiz and press Start first.")
        boxes = (canvas or {}).get("boxes") or []
        box = (boxes[0]["xmin"], boxes[0]["ymin"], boxes[0]["xmax"], boxes[0]["ymax"]) if boxes else None
        with self.services.db.session_scope() as session:
            feedback = submit_attempt(session, actor, state["collection_id"], state["case_id"], phase=phase,
                                      box=box,
                                      next_action=next_action, critical_risk=critical_risk)
            image = self.services.frames.open_image(feedback.material.frame)
        return [view.feedback_html(feedback), gr.Image(value=view.feedback_image(feedback, image),
                                                       visible=True)]

    # --- results -----------------------------------------------------------------------------------------

    def results(self, request: gr.Request, resident: str | None, collection_id: int | None) -> list[Any]:
        """[score over time, hardest cases, confusions, per resident, per case, attempts, attempt choice]."""
        actor = self._actor(request)
        with self.services.db.session_scope() as session:
            results = teaching_results(session, actor, resident=_none(resident),
                                       collection_id=_none(collection_id) or None)
        attempts = results.attempts
        shown = attempts[["attempt", "created_at", "resident", "case_key", "collection", "phase",
                          "reference_phase",
                          "phase_correct", "iou", "hardcore_iou"]].copy()
        shown["created_at"] = shown["created_at"].astype(str).str.slice(0, 19)
        choices = [(f"#{r.attempt} {r.resident} {r.case_key} ({str(r.created_at)[:16]})", int(r.attempt))
                   for r in attempts.iloc[::-1].itertuples()]
        return [teach_charts.score_over_time_figure(results.timeline),
                teach_charts.hardest_cases_figure(results.cases),
                teach_charts.phase_confusion_figure(results.confusions), results.residents.round(3),
                results.cases.round(3), shown.round(3), gr.Dropdown(choices=choices, value=None)]

    def open_attempt(self, request: gr.Request, attempt_id: int | None) -> list[Any]:
        """A stored attempt's feedback (a resident's own; an educator's choice of any)."""
        actor = self._actor(request)
        if attempt_id is None:
            return [gr.skip(), gr.skip()]
        with self.services.db.session_scope() as session:
            feedback = attempt_feedback(session, actor, attempt_id)
            image = self.services.frames.open_image(feedback.material.frame)
        return [view.feedback_html(feedback), gr.Image(value=view.feedback_image(feedback, image),
                                                       visible=True)]

    # --- one-click add, for other tabs -------------------------------------------------------------------

    def collect_choices(self, request: gr.Request) -> list[Any]:
        actor = auth.actor_for(self.services, request)
        if not actor.has("educator"):
            return [gr.Row(visible=False), gr.skip()]
        with self.services.db.session_scope() as session:
            infos = [i for i in col.visible_collections(session, actor) if i.mine]
        choices = _collection_choices(infos)
        return [gr.Row(visible=True), gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)]

    def collect(self, request: gr.Request, collection_id: int | None, case_id: int | None) -> str:
        actor = self._actor(request, EDUCATOR)
        if collection_id is None or case_id is None:
            raise DomainError("Choose a case and a collection first.")
        with self.services.db.session_scope() as session:
            item = col.add_to_collection(session, actor, collection_id, int(case_id))
            name = col.get_collection(session, actor, collection_id).name
        return view.esc(f"Added as case {item.position} of {name}.")
