"""Write the synthetic demo pack to a folder: frames, LabelMe reference labels, the demo models' outputs."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation.demo.labels import labelme_document, reference_rationale
from annotation.demo.outputs import TASKS, prediction_record
from annotation.demo.plan import PlantedError, plan_answers, planted_errors
from annotation.demo.render import render_frame
from annotation.demo.scene import HEIGHT, WIDTH, DemoCase, demo_cases

FRAMES_DIR = "frames"
PREDICTIONS_FILE = "predictions.jsonl"


@dataclass(frozen=True)
class DemoPackFiles:
    """Where the pack was written, its cases (key, reference phase, Go Zone box) and the planted mistakes."""

    folder: Path
    frames_dir: Path
    predictions: Path
    cases: tuple[DemoCase, ...]
    planted: tuple[PlantedError, ...] = ()


def write_demo_pack(folder: Path) -> DemoPackFiles:
    """Write the demo pack under ``folder`` (created if missing; earlier pack files are overwritten).

    Output is deterministic: the same bytes on every run with the same Pillow version.
    """
    folder = Path(folder)
    cases = demo_cases()
    for case in cases:
        write_case(folder, case)
    answers = plan_answers(cases)
    records = [prediction_record(answer, task) for answer in _case_major(answers, cases) for task in TASKS]
    predictions = folder / PREDICTIONS_FILE
    _write_text(predictions, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return DemoPackFiles(folder, folder / FRAMES_DIR, predictions, cases, tuple(planted_errors(answers)))


def write_case(folder: Path, case: DemoCase) -> None:
    """The frame PNG and its LabelMe JSON beside it."""
    image_path = folder / case.image
    image_path.parent.mkdir(parents=True, exist_ok=True)
    render_frame(case.anatomy(), case.seed).save(image_path, format="PNG", compress_level=3)
    rationale = reference_rationale_for(case)
    doc = labelme_document(image_path.name, case.phase, case.box, rationale, WIDTH, HEIGHT)
    _write_json(image_path.with_suffix(".json"), doc)


def reference_rationale_for(case: DemoCase) -> dict[str, str]:
    """The reference rationale of ``case``: its phase's texts, the wording picked by the case seed."""
    return reference_rationale(case.phase, random.Random(case.seed).randrange(2))


def _case_major(answers: list[Any], cases: tuple[DemoCase, ...]) -> list[Any]:
    """Answers ordered case by case (models in DEMO_MODELS order within a case)."""
    order = {case.key: i for i, case in enumerate(cases)}
    return sorted(answers, key=lambda a: order[a.case.key])  # stable: keeps the model order


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    _write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))  # bytes: no platform newline translation
