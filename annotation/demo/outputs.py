"""The recorded raw outputs of the demo models, each written in its model's own output form.

demo-surg-r1 (Surg-R1 form), both tasks, on one line (wrapped here)::

    <think> This is a Level 3 task requiring ... Level 1: ... Level 2: ... Level 3: ... </think>
    <answer> X </answer>

  the Go Zone answer is ``[{"bbox_2d": [x1, y1, x2, y2], "label": "go zone"}]`` in Qwen2.5-VL resized-input
  pixels.

demo-surgo-r1 (SurGo-R1 form): the phase task holds the phase turn alone; the gozone task holds BOTH turns in
one text, separated by a line that is exactly ``<|turn|>`` (TURN_SEPARATOR; a parser splits on it)::

    <think>...</think><answer>B</answer>
    <|turn|>
    <think>...</think>
    Location: ...
    Exposure: ...
    Next action: ...
    Critical risk: ...
    <answer>
    ```json
    [{"bbox_2d": [x1, y1, x2, y2], "label": "go zone"}]
    ```
    </answer>

  with the box in relative 0-1000. Turn 2 follows the phase the model chose in turn 1, right or wrong.

demo-baseline: the bare answer: a phase name, or a box ``(x1,y1),(x2,y2)`` in relative 0-1000.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from annotation.demo.labels import phrases, reference_rationale
from annotation.demo.plan import DEMO_MODELS, PlannedAnswer
from annotation.demo.scene import HEIGHT, WIDTH, Anatomy
from models import vocabularies
from models.boxes import CONVENTIONS, Box

TURN_SEPARATOR = "<|turn|>"
PROMPT_VERSION = "demo-v1"
TASKS = ("phase", "gozone")
PART_TITLES = {"location": "Location", "exposure": "Exposure", "next_action": "Next action",
               "critical_risk": "Critical risk"}
# Simulated decoding speed per model: (fixed ms, ms per completion token).
_SPEED = {"demo-surg-r1": (420, 27.0), "demo-surgo-r1": (650, 31.0), "demo-baseline": (190, 24.0)}


def phase_name(phase: str) -> str:
    return vocabularies.load("resgo").phase(phase).name


def encode_box(box: Box, model: str) -> list[int]:
    """``box`` (canonical pixels) in the model's configured convention, rounded to whole numbers."""
    encode = CONVENTIONS[DEMO_MODELS[model].box_convention][1]
    return [round(v) for v in encode(box, WIDTH, HEIGHT)]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _grid(x: float, y: float) -> str:
    row = ("upper", "middle", "lower")[min(2, int(3 * y / HEIGHT))]
    column = ("left", "centre", "right")[min(2, int(3 * max(0.0, x) / WIDTH))]
    return "centre" if (row, column) == ("middle", "centre") else f"{row} {column}"


def _instruments(anatomy: Anatomy, hallucination: str | None) -> str:
    seen = [f"a {t.name} entering from the {t.side}, tip at the {_grid(*t.tip)}" for t in anatomy.instruments]
    if hallucination:
        seen.append(hallucination)
    return "Instruments: " + "; ".join(seen) + "."


def _triplets(anatomy: Anatomy) -> str:
    return "; ".join(f"{t.name}, {t.verb}, {t.target}" for t in anatomy.instruments)


def _levels_1_2(answer: PlannedAnswer, hallucination: str | None) -> str:
    anatomy, text = answer.case.anatomy(), phrases()
    return (f"Level 1: {_instruments(anatomy, hallucination)} Tissues: {text['tissues'][answer.phase]}. "
            f"Level 2: Triplets: {_triplets(anatomy)}. {text['triplet_notes'][answer.phase]}")


def surg_r1_phase(answer: PlannedAnswer, rng: random.Random) -> str:
    name, tools = phase_name(answer.phase), len(answer.case.anatomy().instruments)
    think = (f"This is a Level 3 task requiring phase recognition from the visible instruments, their "
             f"actions and the state of the anatomy. {_levels_1_2(answer, None)} "
             f"Level 3: Tool count: {tools}. "
             f"{_sentence(phrases()['cues'][answer.phase])}, so the phase is {name}.")
    closing = " " if answer.malformed else " </think> "  # the malformed output never closes its reasoning
    return f"<think> {think}{closing}<answer> {name} </answer>"


def surg_r1_gozone(answer: PlannedAnswer, rng: random.Random) -> str:
    definition = vocabularies.load("resgo").phase(answer.phase).definition
    box = json.dumps([{"bbox_2d": encode_box(answer.box, answer.model), "label": "go zone"}])
    think = (f"This is a Level 3 task requiring localization of the Go Zone, which depends on the surgical "
             f"phase. {_levels_1_2(answer, answer.hallucination)} Level 3: "
             f"{_sentence(phrases()['cues'][answer.phase])}, so the phase is {phase_name(answer.phase)}. "
             f"The Go Zone is {definition[:1].lower()}{definition[1:]}")
    return f"<think> {think} </think> <answer> {box} </answer>"


def surgo_phase_turn(answer: PlannedAnswer, rng: random.Random) -> str:
    held = any(t.name == "grasper" for t in answer.case.anatomy().instruments)
    holding = "The grasper holds the gallbladder up" if held else "No grasper holds the gallbladder"
    think = (f"{holding}; {phrases()['cues'][answer.phase]}. Of options A-D this matches "
             f"{answer.phase}, {phase_name(answer.phase)}.")
    return f"<think>{think}</think><answer>{answer.phase}</answer>"


def surgo_gozone(answer: PlannedAnswer, rng: random.Random) -> str:
    parts = reference_rationale(answer.phase, rng.randrange(2))
    if answer.rationale_error:
        part, wrong = answer.rationale_error
        parts[part] = wrong
    box = json.dumps([{"bbox_2d": encode_box(answer.box, answer.model), "label": "go zone"}])
    reasoning = phrases()["zone_reasoning"][answer.phase]
    lines = [surgo_phase_turn(answer, rng), TURN_SEPARATOR, f"<think>{reasoning}</think>",
             *(f"{title}: {parts[key]}" for key, title in PART_TITLES.items()),
             "<answer>", "```json", box, "```", "</answer>"]
    return "\n".join(lines)


def baseline_phase(answer: PlannedAnswer, rng: random.Random) -> str:
    phase = vocabularies.load("resgo").phase(answer.phase)
    return rng.choice((phase.name, phase.aliases[0]))


def baseline_gozone(answer: PlannedAnswer, rng: random.Random) -> str:
    x1, y1, x2, y2 = encode_box(answer.box, answer.model)
    if answer.swapped_corners:
        x1, y1, x2, y2 = x2, y2, x1, y1
    return f"({x1},{y1}),({x2},{y2})"


WRITERS: dict[tuple[str, str], Callable[[PlannedAnswer, random.Random], str]] = {
    ("demo-surg-r1", "phase"): surg_r1_phase,
    ("demo-surg-r1", "gozone"): surg_r1_gozone,
    ("demo-surgo-r1", "phase"): surgo_phase_turn,
    ("demo-surgo-r1", "gozone"): surgo_gozone,
    ("demo-baseline", "phase"): baseline_phase,
    ("demo-baseline", "gozone"): baseline_gozone,
}


def prediction_record(answer: PlannedAnswer, task: str) -> dict[str, Any]:
    """One predictions.jsonl line of ``answer`` for ``task``, with simulated latency and token count."""
    rng = random.Random(f"{answer.model}/{answer.case.key}/{task}")
    raw = WRITERS[answer.model, task](answer, rng)
    tokens = max(1, round(len(raw) / 3.6))
    fixed, per_token = _SPEED[answer.model]
    model = DEMO_MODELS[answer.model]
    return {
        "case": answer.case.key, "model": answer.model, "task": task, "raw": raw,
        "prompt_version": PROMPT_VERSION, "family": model.family, "box_convention": model.box_convention,
        "color": model.color, "latency_ms": round(fixed + per_token * tokens * rng.uniform(0.85, 1.2)),
        "completion_tokens": tokens,
    }
