"""Versioned prompt templates: the three-level tasks and the two-turn phase-then-go Go Zone task.

A template turns a case's context into chat messages (TRL conversational format, one image part). Change the
wording, change the version: every prediction records the version, so cached outputs of an older wording are
never served for a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.vocabularies import Vocabulary, load

TURN_SEPARATOR = "<|turn|>"

THREE_LEVELS = (
    "Reason in three levels inside <think></think> before answering: Level 1 perceptual grounding (which "
    "instruments and tissues are visible, and where), Level 2 relational understanding (tool-action-tissue "
    "interactions), Level 3 contextual reasoning (step, phase, critical view of safety); stop at the level the "
    "task needs. Then give the final answer inside <answer></answer>.")


@dataclass(frozen=True)
class PromptContext:
    """What a template may mention about the case."""

    vocabulary: Vocabulary = field(default_factory=lambda: load("resgo"))
    target: str = "grasper"
    region: str = "the image"


def _user(text: str, *, image: bool = True) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "image"}] if image else []
    return {"role": "user", "content": [*content, {"type": "text", "text": text}]}


@dataclass(frozen=True)
class PromptTemplate:
    task: str
    version: str
    turns: int = 1

    def first_turn(self, context: PromptContext) -> list[dict[str, Any]]:
        return [_user(_QUESTIONS[self.task](context))]

    def second_turn(self, history: list[dict[str, Any]], first_answer: str, phase_id: str | None,
                    context: PromptContext) -> list[dict[str, Any]]:
        """Turn 2 of phase-then-go: the definition of the phase the model chose is inserted."""
        assistant = {"role": "assistant", "content": [{"type": "text", "text": first_answer}]}
        return [*history, assistant, _user(_gozone_turn_two(phase_id, context.vocabulary), image=False)]


def _phase_question(context: PromptContext) -> str:
    options = "; ".join(p.name for p in context.vocabulary.phases)
    return (f"This is a laparoscopic frame ({context.vocabulary.procedure.replace('_', ' ')}). Which surgical "
            f"phase is shown? Choose one of: {options}. {THREE_LEVELS}")


def _triplet_question(context: PromptContext) -> str:
    vocab = load("cholect50").lists
    return ("List every instrument-verb-target triplet visible in this laparoscopic cholecystectomy frame as "
            "'instrument verb target', separated by ';'. Instruments: " + ", ".join(vocab["instruments"])
            + ". Verbs: " + ", ".join(vocab["verbs"]) + ". Targets: " + ", ".join(vocab["targets"])
            + f". {THREE_LEVELS}")


def _action_question(context: PromptContext) -> str:
    actions = "; ".join(load("sar_rarp50").lists["actions"])
    return (f"This frame is from robot-assisted radical prostatectomy suturing. Which action is performed? "
            f"Choose one of: {actions}. {THREE_LEVELS}")


def _cvs_question(context: PromptContext) -> str:
    criteria = " ".join(f"{c['id']}: {c['definition']}" for c in load("endoscapes").items["criteria"])
    return (f"Assess the critical view of safety in this frame. For each criterion answer yes or no as "
            f"'C1: yes; C2: no; C3: no'. {criteria} {THREE_LEVELS}")


def _localization_question(context: PromptContext) -> str:
    return (f"Find the {context.target} in {context.region} in the format of bbox (x1,y1), (x2,y2). "
            f"{THREE_LEVELS}")


def _gozone_turn_one(context: PromptContext) -> str:
    options = " ".join(f"({p.id}) {p.name}." for p in context.vocabulary.phases)
    return (f"This is a frame from a laparoscopic cholecystectomy. Which phase is the operation in? {options} "
            "Think inside <think></think>, then answer with the letter inside <answer></answer>.")


def _gozone_turn_two(phase_id: str | None, vocabulary: Vocabulary) -> str:
    if phase_id is not None:
        phase = vocabulary.phase(phase_id)
        definition = f"The phase is ({phase.id}) {phase.name}. Its Go Zone is: {phase.definition}"
    else:  # the model named no known phase: give every definition and let it choose
        definition = "Go Zone definitions by phase: " + " ".join(
            f"({p.id}) {p.name}: {p.definition}" for p in vocabulary.phases)
    return (f"{definition} Reason inside <think></think>. Then write four lines - 'Location:' where the Go Zone "
            "lies relative to landmarks, 'Exposure:' whether visualization is adequate, 'Next action:', and "
            "'Critical risk:' - and give the Go Zone box inside <answer></answer> as JSON "
            '[{"bbox_2d": [x1, y1, x2, y2], "label": "go zone"}].')


_QUESTIONS = {"phase": _phase_question, "triplet": _triplet_question, "action": _action_question,
              "cvs": _cvs_question, "localization": _localization_question, "gozone": _gozone_turn_one}

TEMPLATES: dict[str, PromptTemplate] = {
    "phase": PromptTemplate("phase", "phase-3level-v1"),
    "triplet": PromptTemplate("triplet", "triplet-3level-v1"),
    "action": PromptTemplate("action", "action-3level-v1"),
    "cvs": PromptTemplate("cvs", "cvs-3level-v1"),
    "localization": PromptTemplate("localization", "localization-3level-v1"),
    "gozone": PromptTemplate("gozone", "gozone-phase-then-go-v1", turns=2),
}


def template_for(task: str) -> PromptTemplate:
    try:
        return TEMPLATES[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TEMPLATES)}") from None
