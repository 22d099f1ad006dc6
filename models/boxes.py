"""One box type and one conversion per convention.

Canonical form everywhere: float pixel corners (x1, y1, x2, y2) of the ORIGINAL frame, x1 < x2, y1 < y2.
Conventions are converted at the edges only (model outputs, LabelMe, Label Studio, COCO).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class BoxError(ValueError):
    """Numbers that cannot be a box (not finite, no area, wholly outside the frame)."""


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)


@dataclass(frozen=True)
class FittedBox:
    box: Box
    swapped: bool
    clipped: bool


def fit_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> FittedBox:
    """Order the corners and clip to a ``width`` x ``height`` frame, saying what was changed.

    Raises BoxError when a coordinate is not a finite number, or nothing of the box lies in the frame.
    """
    coords = (x1, y1, x2, y2)
    if not all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in coords):
        raise BoxError(f"box coordinates must be finite numbers, got {list(coords)!r}")
    lx, hx = sorted((float(x1), float(x2)))
    ly, hy = sorted((float(y1), float(y2)))
    swapped = (lx, ly, hx, hy) != tuple(float(c) for c in coords)
    cx1, cy1, cx2, cy2 = max(lx, 0.0), max(ly, 0.0), min(hx, float(width)), min(hy, float(height))
    if cx1 >= cx2 or cy1 >= cy2:
        raise BoxError(f"box {list(coords)!r} has no area inside the {width}x{height} frame")
    clipped = (cx1, cy1, cx2, cy2) != (lx, ly, hx, hy)
    return FittedBox(Box(cx1, cy1, cx2, cy2), swapped, clipped)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0
