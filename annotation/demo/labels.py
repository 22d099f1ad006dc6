"""Reference labels of the demo frames: the surgeon-style rationale per ResGo phase and the LabelMe JSON."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from models.boxes import Box

RATIONALE_PARTS = ("location", "exposure", "next_action", "critical_risk")
LABELME_VERSION = "5.5.0"
GO_ZONE_LABEL = "gozone"


@cache
def phrases() -> dict[str, Any]:
    """The demo's text bank (phrases.toml beside this module)."""
    return tomllib.loads((Path(__file__).parent / "phrases.toml").read_text(encoding="utf-8"))


def reference_rationale(phase: str, variant: int) -> dict[str, str]:
    """The four rationale parts a surgeon wrote for a frame of ``phase``; ``variant`` picks the wording."""
    texts = phrases()["reference"][phase]
    return {part: texts[part][variant % len(texts[part])] for part in RATIONALE_PARTS}


def labelme_document(image_name: str, phase: str, box: Box, rationale: dict[str, str], width: int,
                     height: int) -> dict[str, Any]:
    """A LabelMe annotation with one ``gozone`` rectangle (original pixels), the phase as a flag, and the
    rationale as top-level keys (LabelMe keeps unknown keys)."""
    shape = {
        "label": GO_ZONE_LABEL,
        "points": [[box.x1, box.y1], [box.x2, box.y2]],
        "group_id": None,
        "description": "",
        "shape_type": "rectangle",
        "flags": {},
        "mask": None,
    }
    return {
        "version": LABELME_VERSION,
        "flags": {phase: True},
        "shapes": [shape],
        "imagePath": image_name,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
        **rationale,
    }
