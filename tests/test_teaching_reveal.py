"""Pure teaching logic: the reveal order of a presented case, moving through steps and cases, the boxes shown
at each step, and quiz scoring (IoU, phase, the hardcore rule)."""

from __future__ import annotations

import pytest

from models.boxes import Box
from review.teaching.material import CaseMaterial, Expert, ModelOutput
from review.teaching.presentation import (
    LAST,
    Place,
    Revealed,
    Slide,
    navigate,
    reveal_steps,
    visible_boxes,
)
from review.teaching.quiz import hardcore_iou, score_attempt

MODEL_BOX = Box(120, 120, 320, 320)
EXPERT = Expert("B", "Dissection of Calot's Triangle", Box(100, 100, 300, 300), {"location": "inside"})


def _output(model: str, levels: dict[int, str] | None = None, thinking: str | None = None,
            box: Box | None = MODEL_BOX) -> ModelOutput:
    return ModelOutput(model, "#1f77b4", levels or {}, thinking, "B", "B", "Dissection",
                       (box,) if box else (), {})


def _material(*outputs: ModelOutput, expert: Expert | None = EXPERT) -> CaseMaterial:
    return CaseMaterial(1, "demo/v/1", "gozone", 854, 480, "Where?", (("A", "a"), ("B", "b")), expert,
                        outputs,
                        frame=None)


def test_the_reveal_order_is_question_levels_answer_reference_contrast_teaching_point():
    material = _material(_output("reasoner", {1: "sees", 2: "does", 3: "means"}), _output("baseline"))
    assert reveal_steps(material, "reasoner", "Note the triangle") == (
        "question", "level1", "level2", "level3", "answer", "reference", "contrast", "teaching_point")


def test_steps_a_case_cannot_fill_are_left_out():
    # A localization-style output stops at Level 1; free-form thinking is one step; no reference, no others.
    assert reveal_steps(_material(_output("m", {1: "sees"}), expert=None), "m") == ("question", "level1",
                                                                                    "answer")
    assert reveal_steps(_material(_output("m", thinking="hmm")), "m") == ("question", "reasoning", "answer",
                                                                         "reference")
    assert reveal_steps(_material(_output("m", {2: "does", 1: "sees"})), "m")[1:3] == ("level1", "level2")
    # No presenting model with an output: the question, then straight to the reference and the models.
    assert reveal_steps(_material(_output("m")), None) == ("question", "reference", "contrast")
    assert reveal_steps(_material(), None) == ("question", "reference")


def test_revealed_says_what_is_on_screen_so_far():
    steps = ("question", "level1", "level2", "level3", "answer", "reference", "contrast")
    shown = Revealed(steps, 2)
    assert shown.levels == (1, 2) and shown.current == "level2" and not shown.shows("answer")
    assert Revealed(steps, 6).is_last and Revealed(steps, 6).shows("question")


@pytest.mark.parametrize(("place", "action", "expected"), [
    (Place(1, 0), "next_step", Place(1, 1)),
    (Place(1, 4), "next_step", Place(2, 0)),     # past the last step: the next case's question
    (Place(3, 4), "next_step", Place(3, 4)),     # the end of the collection stops
    (Place(2, 0), "prev_step", Place(1, LAST)),  # back from a question: the previous case fully revealed
    (Place(1, 0), "prev_step", Place(1, 0)),
    (Place(2, 3), "prev_step", Place(2, 2)),
    (Place(2, 3), "next_case", Place(3, 0)),
    (Place(3, 3), "next_case", Place(3, 0)),
    (Place(2, 3), "prev_case", Place(1, 0)),
    (Place(2, LAST), "prev_step", Place(2, 3)),  # LAST resolves to the case's last step first
    (Place(2, 1), "last_step", Place(2, 4)),
    (Place(2, 3), "first_step", Place(2, 0)),
    (Place(9, 0), "next_case", Place(3, 0)),     # a stale position is clamped to the collection
])
def test_navigate_moves_through_steps_and_cases(place, action, expected):
    assert navigate(place, action, n_items=3, n_steps=5) == expected


def test_navigate_refuses_an_unknown_action():
    with pytest.raises(ValueError, match="unknown action"):
        navigate(Place(1, 0), "jump", 3, 5)


def test_boxes_appear_with_the_step_that_reveals_them():
    reasoner = _output("reasoner", {1: "a", 2: "b", 3: "c"}, box=Box(1, 1, 50, 50))
    other = _output("baseline", box=Box(60, 60, 90, 90))
    material = _material(reasoner, other)
    steps = reveal_steps(material, "reasoner")

    def boxes(step: str) -> list[tuple[str, bool]]:
        slide = Slide(1, "c", 1, 1, "reasoner", None, None, material, Revealed(steps, steps.index(step)))
        return [(b.label, b.reference) for b in visible_boxes(slide)]

    assert boxes("question") == [] and boxes("level3") == []
    assert boxes("answer") == [("reasoner", False)]
    assert boxes("reference") == [("reasoner", False), ("expert", True)]
    assert boxes("contrast") == [("reasoner", False), ("expert", True), ("baseline", False)]


def test_quiz_scoring_iou_phase_and_the_hardcore_rule():
    expert = Box(0, 0, 100, 100)
    right = score_attempt("B", Box(0, 0, 100, 50), "B", expert)
    assert right.phase_correct is True
    assert right.iou == pytest.approx(0.5) and right.hardcore_iou == pytest.approx(0.5)
    wrong = score_attempt("C", Box(0, 0, 100, 50), "B", expert)
    assert wrong.phase_correct is False and wrong.iou == pytest.approx(0.5) and wrong.hardcore_iou == 0.0
    missed = score_attempt("B", None, "B", expert)
    assert missed.iou == 0.0 and missed.hardcore_iou == 0.0
    no_reference = score_attempt("B", Box(0, 0, 10, 10), None, None)
    assert no_reference == (no_reference.__class__(None, None, None))
    phase_only = score_attempt("A", Box(0, 0, 10, 10), "B", None)
    assert phase_only.phase_correct is False and phase_only.hardcore_iou is None
    assert hardcore_iou(0.7, None) == 0.7 and hardcore_iou(0.7, True) == 0.7 and hardcore_iou(None,
                                                                                              False) is None
