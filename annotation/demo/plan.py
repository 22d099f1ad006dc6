"""What each demo model "answers" for each demo case, decided before any text is written.

The models differ the way real ones do (see DOMAIN.md): the phase-then-go model gets ~80 % of phases
right with boxes of IoU 0.4-0.8, the three-level reasoner ~70 % with looser boxes, the answer-only baseline
~35 % with poor boxes. Which cases go wrong is drawn with seeded generators, so every run plans the same
answers. A few outputs carry planted mistakes (listed as PlantedError) so reviewers have something to catch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from annotation.demo.labels import phrases
from annotation.demo.scene import HEIGHT, PHASES, WIDTH, DemoCase, zone_box
from models.boxes import Box, BoxError, fit_box, iou


@dataclass(frozen=True)
class DemoModel:
    family: str
    box_convention: str
    color: str
    description: str


DEMO_MODELS = {
    "demo-surg-r1": DemoModel(
        "qwen2.5-vl", "qwen25_pixels", "#1f77b4",
        "Synthetic three-level reasoner in the Surg-R1 form: <think> Level 1-3 </think> <answer>; "
        "boxes in Qwen2.5-VL resized-input pixels."),
    "demo-surgo-r1": DemoModel(
        "qwen3-vl", "rel1000", "#2ca02c",
        "Synthetic phase-then-go Go Zone model in the SurGo-R1 form: a phase turn, then a rationale turn "
        "(location, exposure, next action, critical risk) with a box in relative 0-1000."),
    "demo-baseline": DemoModel(
        "qwen3-vl", "rel1000", "#d62728",
        "Synthetic answer-only baseline: a phase name, or a box (x1,y1),(x2,y2) in relative 0-1000."),
}


@dataclass(frozen=True)
class Behaviour:
    wrong_rate: float  # share of cases whose phase is wrong
    iou_band: tuple[float, float]  # IoU of the box to the Go Zone of the phase the model chose
    shift: float  # how far (in box sizes) the box centre may wander while searching the band
    neighbour_errors: bool  # wrong phases are the neighbouring phase (reasoners) or any phase (baseline)


BEHAVIOUR = {
    "demo-surg-r1": Behaviour(0.30, (0.20, 0.55), 0.7, True),
    "demo-surgo-r1": Behaviour(0.20, (0.40, 0.80), 0.4, True),
    "demo-baseline": Behaviour(0.65, (0.00, 0.30), 0.8, False),
}


@dataclass(frozen=True)
class PlannedAnswer:
    """One model's answer for one case, shared by its phase and Go Zone outputs."""

    model: str
    case: DemoCase
    phase: str
    box: Box  # canonical pixels, on the Go Zone of ``phase``
    hallucination: str | None = None  # Level 1 structure that is not in the frame (gozone output)
    rationale_error: tuple[str, str] | None = None  # (part, wrong text) in the gozone output
    malformed: bool = False  # phase output loses its </think>
    swapped_corners: bool = False  # gozone box written bottom-right corner first


@dataclass(frozen=True)
class PlantedError:
    """An answer key entry: what is wrong in one recorded output, for demos and tests."""

    case: str
    model: str
    task: str
    kind: str  # wrong_phase, hallucination, wrong_rationale, malformed, swapped_corners
    detail: str


def plan_answers(cases: tuple[DemoCase, ...]) -> list[PlannedAnswer]:
    """Every model's planned answer for every case, model by model in DEMO_MODELS order."""
    answers = []
    for model in DEMO_MODELS:
        chosen = _phases(model, cases)
        planned = [_answer(model, case, phase) for case, phase in zip(cases, chosen, strict=True)]
        answers += _plant_mistakes(model, planned)
    return answers


def _phases(model: str, cases: tuple[DemoCase, ...]) -> list[str]:
    """The phase the model chooses per case: exactly round(n * wrong_rate) of them wrong."""
    behaviour = BEHAVIOUR[model]
    rng = random.Random(f"{model}/phase")
    wrong = set(rng.sample(range(len(cases)), round(len(cases) * behaviour.wrong_rate)))
    chosen = []
    for i, case in enumerate(cases):
        if i not in wrong:
            chosen.append(case.phase)
            continue
        position = PHASES.index(case.phase)
        neighbours = [PHASES[j] for j in (position - 1, position + 1) if 0 <= j < len(PHASES)]
        others = neighbours if behaviour.neighbour_errors else [p for p in PHASES if p != case.phase]
        chosen.append(rng.choice(others))
    return chosen


def _answer(model: str, case: DemoCase, phase: str) -> PlannedAnswer:
    target = zone_box(case.anatomy(), phase)
    rng = random.Random(f"{model}/{case.key}/box")
    return PlannedAnswer(model, case, phase, box_near(target, BEHAVIOUR[model], rng))


def box_near(target: Box, behaviour: Behaviour, rng: random.Random) -> Box:
    """A box inside the frame whose IoU with ``target`` lies in the behaviour's band (seeded search)."""
    low, high = behaviour.iou_band
    w, h = target.x2 - target.x1, target.y2 - target.y1
    candidate = target
    for _ in range(500):
        cx = target.center[0] + rng.uniform(-behaviour.shift, behaviour.shift) * w
        cy = target.center[1] + rng.uniform(-behaviour.shift, behaviour.shift) * h
        half_w, half_h = w * rng.uniform(0.55, 1.6) / 2, h * rng.uniform(0.55, 1.6) / 2
        try:
            candidate = fit_box(cx - half_w, cy - half_h, cx + half_w, cy + half_h, WIDTH, HEIGHT).box
        except BoxError:
            continue
        if low <= iou(candidate, target) <= high and candidate.area > 400:
            return candidate
    return candidate


def _plant_mistakes(model: str, answers: list[PlannedAnswer]) -> list[PlannedAnswer]:
    answers = list(answers)
    _PLANTERS[model](answers, random.Random(f"{model}/mistakes"))
    return answers


def _plant_surg_r1(answers: list[PlannedAnswer], rng: random.Random) -> None:
    """Two Level 1 hallucinations (gozone outputs) and one unclosed </think> (a phase output)."""
    hallucinations = [entry["phrase"] for entry in phrases()["errors"]["hallucination"]]
    picks = rng.sample(range(len(answers)), 3)
    for i, phrase in zip(picks[:2], rng.sample(hallucinations, 2), strict=True):
        answers[i] = replace(answers[i], hallucination=phrase)
    answers[picks[2]] = replace(answers[picks[2]], malformed=True)


def _plant_surgo_r1(answers: list[PlannedAnswer], rng: random.Random) -> None:
    """Two clinically wrong rationale parts, on cases whose phase the model got right."""
    errors = {e["phase"]: (e["part"], e["text"]) for e in phrases()["errors"]["rationale"]}
    by_phase = {a.phase: i for i, a in enumerate(answers) if a.phase == a.case.phase}
    for phase in rng.sample(sorted(by_phase), 2):
        answers[by_phase[phase]] = replace(answers[by_phase[phase]], rationale_error=errors[phase])


def _plant_baseline(answers: list[PlannedAnswer], rng: random.Random) -> None:
    """One box written with its corners swapped."""
    i = rng.randrange(len(answers))
    answers[i] = replace(answers[i], swapped_corners=True)


_PLANTERS = {"demo-surg-r1": _plant_surg_r1, "demo-surgo-r1": _plant_surgo_r1, "demo-baseline": _plant_baseline}


def planted_errors(answers: list[PlannedAnswer]) -> list[PlantedError]:
    """The answer key: every planted mistake of ``answers``."""
    found = []
    for a in answers:
        key, model = a.case.key, a.model
        if a.phase != a.case.phase:
            detail = f"chose phase {a.phase}, reference {a.case.phase}"
            found += [PlantedError(key, model, task, "wrong_phase", detail) for task in ("phase", "gozone")]
        if a.hallucination:
            found.append(PlantedError(key, model, "gozone", "hallucination", a.hallucination))
        if a.rationale_error:
            found.append(PlantedError(key, model, "gozone", "wrong_rationale", f"{a.rationale_error[0]}: "
                                                                            f"{a.rationale_error[1]}"))
        if a.malformed:
            found.append(PlantedError(key, model, "phase", "malformed", "the </think> tag is never closed"))
        if a.swapped_corners:
            found.append(PlantedError(key, model, "gozone", "swapped_corners", "box written (x2,y2),(x1,y1)"))
    return found
