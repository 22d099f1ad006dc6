"""Presentation mode: one case of a collection at a time, revealed step by step.

The reveal order is a pure function of what the case has (``reveal_steps``): the question, then Level 1, 2 and
3 of the presenting model's reasoning (free-form thinking as one step when it has no levels), its answer,
the expert reference (phase, Go Zone box, rationale), the other models for contrast, and the teaching point.
Steps a case cannot fill are left out. ``navigate`` moves through steps and cases; ``present`` loads the slide
for an educator. Boxes appear with the step that reveals them (``visible_boxes``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.schema import CollectionItem, Model
from db.users import Actor, require
from models.boxes import Box
from review.teaching.collections import EDUCATOR, get_collection, item_case_ids
from review.teaching.material import CaseMaterial, ModelOutput, case_material

QUESTION, REASONING, ANSWER, REFERENCE, CONTRAST, TEACHING_POINT = (
    "question", "reasoning", "answer", "reference", "contrast", "teaching_point")
LEVEL_STEPS = {1: "level1", 2: "level2", 3: "level3"}
STEP_TITLES = {QUESTION: "Question", "level1": "Level 1", "level2": "Level 2", "level3": "Level 3",
               REASONING: "Reasoning", ANSWER: "Answer", REFERENCE: "Expert reference",
               CONTRAST: "Other models", TEACHING_POINT: "Teaching point"}
LAST = -1  # a step index meaning "the last step of the case", resolved once the case is loaded
ACTIONS = ("next_step", "prev_step", "next_case", "prev_case", "first_step", "last_step")
REFERENCE_LABEL = "expert"


def reveal_steps(material: CaseMaterial, presenter: str | None, teaching_point: str | None = None
                 ) -> tuple[str, ...]:
    """The steps of one case in reveal order, leaving out what the case has nothing for."""
    steps = [QUESTION]
    shown = material.output(presenter)
    if shown is not None:
        steps += [LEVEL_STEPS[n] for n in sorted(shown.levels) if n in LEVEL_STEPS and shown.levels[n]]
        if shown.thinking and not shown.levels:
            steps.append(REASONING)
        steps.append(ANSWER)
    if material.expert is not None:
        steps.append(REFERENCE)
    if any(o.model != presenter for o in material.outputs):
        steps.append(CONTRAST)
    if teaching_point:
        steps.append(TEACHING_POINT)
    return tuple(steps)


@dataclass(frozen=True)
class Revealed:
    """What is on screen after ``step`` of ``steps``."""

    steps: tuple[str, ...]
    step: int

    def shows(self, name: str) -> bool:
        return name in self.steps[:self.step + 1]

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(n for n, name in LEVEL_STEPS.items() if self.shows(name))

    @property
    def current(self) -> str:
        return self.steps[self.step]

    @property
    def is_last(self) -> bool:
        return self.step == len(self.steps) - 1


def resolve_step(step: int, n_steps: int) -> int:
    """``step`` as an index into a case of ``n_steps`` steps (LAST is its last step)."""
    return n_steps - 1 if step == LAST else min(max(step, 0), n_steps - 1)


@dataclass(frozen=True)
class Place:
    """Where a presentation is: the case's position (1-based) and the reveal step."""

    position: int
    step: int = 0


def navigate(place: Place, action: str, n_items: int, n_steps: int) -> Place:
    """The place after ``action``. Stepping past a case's last step opens the next case at its question;
    stepping back from a question opens the previous case fully revealed; the ends of the collection stop."""
    step = resolve_step(place.step, n_steps)
    at = min(max(place.position, 1), max(n_items, 1))
    if action == "next_step":
        if step < n_steps - 1:
            return Place(at, step + 1)
        return Place(at + 1, 0) if at < n_items else Place(at, step)
    if action == "prev_step":
        if step > 0:
            return Place(at, step - 1)
        return Place(at - 1, LAST) if at > 1 else Place(at, 0)
    if action == "next_case":
        return Place(min(at + 1, n_items), 0)
    if action == "prev_case":
        return Place(max(at - 1, 1), 0)
    if action == "first_step":
        return Place(at, 0)
    if action == "last_step":
        return Place(at, n_steps - 1)
    raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")


@dataclass(frozen=True)
class Slide:
    """One case of a collection as presented at one reveal step."""

    collection_id: int
    collection_name: str
    position: int
    total: int
    presenter: str | None
    notes: str | None
    teaching_point: str | None
    material: CaseMaterial
    revealed: Revealed

    @property
    def presented(self) -> ModelOutput | None:
        return self.material.output(self.presenter)

    @property
    def others(self) -> tuple[ModelOutput, ...]:
        return tuple(o for o in self.material.outputs if o.model != self.presenter)

    @property
    def place(self) -> Place:
        return Place(self.position, self.revealed.step)


@dataclass(frozen=True)
class ShownBox:
    """A box on the presented frame: whose it is, its colour, and whether it is the expert reference."""

    label: str
    color: str | None
    box: Box
    reference: bool = False


def visible_boxes(slide: Slide) -> list[ShownBox]:
    """The boxes revealed so far: the presenting model's from its answer on, the expert Go Zone from the
    reference on, the other models' with the contrast."""
    shown = slide.revealed
    boxes: list[ShownBox] = []
    presented = slide.presented
    if presented is not None and shown.shows(ANSWER):
        boxes += [ShownBox(presented.model, presented.color, b) for b in presented.boxes]
    expert = slide.material.expert
    if expert is not None and expert.box is not None and shown.shows(REFERENCE):
        boxes.append(ShownBox(REFERENCE_LABEL, None, expert.box, reference=True))
    if shown.shows(CONTRAST):
        boxes += [ShownBox(o.model, o.color, b) for o in slide.others for b in o.boxes]
    return boxes


def default_presenter(session: Session, presenter_model_id: int | None, material: CaseMaterial) -> str | None:
    """The collection's presenting model, else the first model that reasons in levels, else the first."""
    if presenter_model_id is not None:
        name = session.scalar(select(Model.name).where(Model.id == presenter_model_id))
        if name is not None:
            return name
    leveled = [o.model for o in material.outputs if o.levels]
    return (leveled or [o.model for o in material.outputs] or [None])[0]


def present(session: Session, actor: Actor, collection_id: int, place: Place, presenter: str | None = None
            ) -> Slide:
    """The slide at ``place`` of a collection the educator may open (their own or a shared one); the position
    is clamped to the collection and the step to the case. ``presenter`` overrides the collection's model."""
    require(actor, EDUCATOR)
    collection = get_collection(session, actor, collection_id)
    case_ids = item_case_ids(session, collection.id)
    if not case_ids:
        raise NotFound(f"{collection.name!r} has no cases yet; add some under Collections.")
    position = min(max(place.position, 1), len(case_ids))
    case_id = case_ids[position - 1]
    item = session.get(CollectionItem, (collection.id, case_id))
    material = case_material(session, case_id, collection.task)
    chosen = presenter if presenter and material.output(presenter) else default_presenter(
        session, collection.presenter_model_id, material)
    steps = reveal_steps(material, chosen, item.teaching_point)
    revealed = Revealed(steps, resolve_step(place.step, len(steps)))
    return Slide(collection.id, collection.name, position, len(case_ids), chosen, item.notes,
                 item.teaching_point, material, revealed)


def move(session: Session, actor: Actor, collection_id: int, place: Place, action: str,
         presenter: str | None = None) -> Slide:
    """The slide after ``action`` from ``place`` (see ``navigate``)."""
    slide = present(session, actor, collection_id, place, presenter)
    target = navigate(slide.place, action, slide.total, len(slide.revealed.steps))
    if target.position == slide.position:
        return replace(slide, revealed=Revealed(slide.revealed.steps,
                                                resolve_step(target.step, len(slide.revealed.steps))))
    return present(session, actor, collection_id, target, presenter)
