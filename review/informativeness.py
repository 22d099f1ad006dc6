"""How much a reviewer's time on a case would teach us, from the models' outputs alone. Pure.

A case scores high when the models disagree on the answer (or phase), when their boxes overlap little,
and when the case has no reference label yet. The score is the mean of the parts that apply, in [0, 1]:

- answer disagreement (not for localization, whose answer is the box): the share of model pairs whose
  answers differ; phase and Go Zone tasks compare the parsed phase, a missing one differing from all;
- box disagreement (only when some model gave a box): 1 - mean pairwise IoU of the first boxes, a missing
  box counting as IoU 0 against any other;
- no reference: 1 without a current reference label, else 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from models.boxes import Box, iou


def informativeness(task: str, outputs: Sequence[Mapping[str, Any] | None], has_reference: bool) -> float:
    """The score of one case of ``task``: ``outputs`` are the parsed JSON of each model's prediction (None if
    unreadable); ``has_reference`` says whether the case has a current reference label."""
    parsed = [output or {} for output in outputs]
    parts = [0.0 if has_reference else 1.0]
    if task != "localization":
        parts.append(answer_disagreement(parsed, task))
    boxes = [_first_box(p) for p in parsed]
    if any(box is not None for box in boxes):
        parts.append(1.0 - mean_pairwise_iou(boxes))
    return sum(parts) / len(parts)


def answer_disagreement(parsed: Sequence[Mapping[str, Any]], task: str) -> float:
    """The share of output pairs whose answers differ (case and spacing ignored); 0 with fewer than two."""
    keys = [_answer_key(p, task) for p in parsed]
    pairs = list(combinations(keys, 2))
    if not pairs:
        return 0.0
    return sum(a is None or b is None or a != b for a, b in pairs) / len(pairs)


def mean_pairwise_iou(boxes: Sequence[Box | None]) -> float:
    """Mean IoU over all pairs of boxes; a pair with a missing box counts 0; 1.0 with fewer than two boxes."""
    pairs = list(combinations(boxes, 2))
    if not pairs:
        return 1.0
    return sum(0.0 if a is None or b is None else iou(a, b) for a, b in pairs) / len(pairs)


def _answer_key(parsed: Mapping[str, Any], task: str) -> str | None:
    value = parsed.get("phase") if task in ("phase", "gozone") else parsed.get("answer")
    if value is None:
        return None
    key = " ".join(str(value).casefold().split())
    return key or None


def _first_box(parsed: Mapping[str, Any]) -> Box | None:
    boxes = parsed.get("boxes") or ()
    return Box(*boxes[0]["box"]) if boxes else None
