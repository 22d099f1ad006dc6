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


# --- codecs: one per convention -------------------------------------------------------------------

# Qwen2.5-VL's image processor defaults: sides are multiples of 28 (patch 14 x merge 2), area bounded.
QWEN25_FACTOR = 28
QWEN25_MIN_PIXELS = 56 * 56
QWEN25_MAX_PIXELS = 28 * 28 * 1280


def smart_resize(height: int, width: int, factor: int = QWEN25_FACTOR, min_pixels: int = QWEN25_MIN_PIXELS,
                 max_pixels: int = QWEN25_MAX_PIXELS) -> tuple[int, int]:
    """The (height, width) a Qwen-VL processor resizes an image to (the processor's own formula)."""
    if max(height, width) / min(height, width) > 200:
        raise BoxError(f"aspect ratio of {width}x{height} is above 200, which Qwen-VL processors refuse")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _scale(values: tuple[float, float, float, float], to_w: float, from_w: float, to_h: float,
           from_h: float) -> tuple[float, float, float, float]:
    """``values`` scaled by to/from per axis. Multiplying before dividing keeps the frame edge exact
    (W * 1000 / W == 1000), so a box inside the frame stays inside; x * (to / from) can overshoot by an
    ulp (246 * (1000 / 246) * (246 / 1000) == 246.00000000000003)."""
    x1, y1, x2, y2 = values
    return (x1 * to_w / from_w, y1 * to_h / from_h, x2 * to_w / from_w, y2 * to_h / from_h)


def qwen25_to_canonical(values: tuple[float, float, float, float], width: int, height: int,
                        input_size: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
    """Qwen2.5-VL pixels of the resized input -> original pixels. ``input_size`` is (input_w, input_h)
    from ``image_grid_thw`` when known; otherwise smart_resize with the default limits."""
    input_w, input_h = input_size or smart_resize(height, width)[::-1]
    return _scale(values, width, input_w, height, input_h)


def canonical_to_qwen25(box: Box, width: int, height: int,
                        input_size: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
    input_w, input_h = input_size or smart_resize(height, width)[::-1]
    return _scale(box.as_tuple(), input_w, width, input_h, height)


def rel1000_to_canonical(values: tuple[float, float, float, float], width: int,
                         height: int) -> tuple[float, float, float, float]:
    """Qwen2-VL / Qwen3-VL relative 0-1000 -> original pixels."""
    return _scale(values, width, 1000, height, 1000)


def canonical_to_rel1000(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    return _scale(box.as_tuple(), 1000, width, 1000, height)


def labelstudio_to_canonical(x: float, y: float, w: float, h: float, width: int,
                             height: int) -> tuple[float, float, float, float]:
    """Label Studio RectangleLabels (percent of the original width and height) -> original pixels."""
    return (x * width / 100, y * height / 100, _percent_end(x, w) * width / 100,
            _percent_end(y, h) * height / 100)


# x + width of a box that ends on the frame edge can come out as 100.00000000000001 in floats.
_PERCENT_NOISE = 1e-9


def _percent_end(start: float, size: float) -> float:
    """start + size in percent, with float noise just past 100 % taken back to the edge (a real overshoot,
    larger than the noise, is kept for fit_box to clip and report)."""
    end = start + size
    return 100.0 if 100.0 < end <= 100.0 + _PERCENT_NOISE else end


def canonical_to_labelstudio(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    return (box.x1 * 100 / width, box.y1 * 100 / height, (box.x2 - box.x1) * 100 / width,
            (box.y2 - box.y1) * 100 / height)


def labelme_to_canonical(points: object, width: int, height: int) -> FittedBox:
    """LabelMe rectangle ``points`` [[x1, y1], [x2, y2]] (two opposite corners in any order) -> the canonical
    box, ordered and clipped to the frame (see fit_box). Raises BoxError for anything else."""
    if not (isinstance(points, list | tuple) and len(points) == 2
            and all(isinstance(p, list | tuple) and len(p) == 2 for p in points)):
        raise BoxError(f"rectangle points must be [[x1, y1], [x2, y2]], got {points!r}")
    (x1, y1), (x2, y2) = points
    return fit_box(x1, y1, x2, y2, width, height)


def canonical_to_labelme(box: Box) -> list[list[float]]:
    """The LabelMe rectangle points of ``box``: top-left, then bottom-right."""
    return [[box.x1, box.y1], [box.x2, box.y2]]


def coco_to_canonical(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def canonical_to_coco(box: Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1)


# Box conventions by name, as a model's configuration names them: (decode to canonical, encode).
CONVENTIONS = {
    "qwen25_pixels": (qwen25_to_canonical, canonical_to_qwen25),
    "rel1000": (rel1000_to_canonical, canonical_to_rel1000),
    "pixels": (lambda values, width, height: tuple(values), lambda box, width, height: box.as_tuple()),
}
