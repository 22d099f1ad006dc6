"""Where things lie in a synthetic demo frame: the case plan, the seeded anatomy, the Go Zone of each phase.

All geometry is written once in "base" coordinates of an 854x480 frame and moved per frame by a seeded shift
and scale, so the drawing, the reference Go Zone and the instruments always agree.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from models.boxes import Box, fit_box

WIDTH, HEIGHT = 854, 480  # the CholecT50 frame size
FRAME_STEP = 125  # 0.2 fps sampling of a 25 fps video
PHASES = ("A", "B", "C", "D")

# ResGo phase of each sampled frame per synthetic video, in surgical order; four frames per phase overall.
VIDEO_PHASES = {
    "demo_vid01": "AAABBCDD",
    "demo_vid02": "ABBCCCDD",
}

Point = tuple[float, float]

# --- base geometry (pixels of the unshifted frame) ----------------------------------------------------
LIVER_BOX = (20.0, -170.0, 860.0, 175.0)  # ellipse; its lower edge is the liver margin
GB_CENTRE, GB_AXES, GB_ANGLE = (575.0, 205.0), (175.0, 62.0), math.radians(-22.0)
DUCT_PATH = ((410.0, 272.0), (345.0, 318.0), (292.0, 352.0))  # gallbladder neck -> common bile duct
ARTERY_PATH = ((412.0, 250.0), (366.0, 260.0), (320.0, 268.0))
CBD_PATH = ((278.0, 200.0), (270.0, 330.0), (262.0, 480.0))
TRIANGLE = ((286.0, 205.0), (405.0, 232.0), (418.0, 268.0), (300.0, 352.0), (272.0, 335.0))
# Reference Go Zones of phases A-C; D follows the gallbladder-liver plane (see plane_path).
ZONES = {
    "A": (330.0, 236.0, 430.0, 304.0),  # peritoneum over the duct-artery junction at the neck
    "B": (285.0, 206.0, 416.0, 338.0),  # fibro-fatty tissue inside Calot's triangle
    "C": (314.0, 244.0, 414.0, 336.0),  # skeletonized cystic duct and artery
}


@dataclass(frozen=True)
class Instrument:
    name: str  # CholecT50 instrument
    side: str  # where it enters the field, in words
    entry: Point
    tip: Point
    verb: str  # CholecT50 verb
    target: str  # CholecT50 target


@dataclass(frozen=True)
class Anatomy:
    """One frame's layout: a shift and scale of the base geometry, a tint, and the instruments in view."""

    phase: str
    dx: float
    dy: float
    scale: float
    tint: tuple[int, int, int]
    instruments: tuple[Instrument, ...] = ()

    def at(self, x: float, y: float) -> Point:
        cx, cy = WIDTH / 2, HEIGHT / 2
        return (cx + (x - cx) * self.scale + self.dx, cy + (y - cy) * self.scale + self.dy)

    def path(self, points: tuple[Point, ...]) -> list[Point]:
        return [self.at(x, y) for x, y in points]

    def liver_box(self) -> tuple[float, float, float, float]:
        (x1, y1), (x2, y2) = self.at(*LIVER_BOX[:2]), self.at(*LIVER_BOX[2:])
        return (x1, y1, x2, y2)

    def gallbladder(self, steps: int = 48) -> list[Point]:
        return [self.at(*p) for p in ellipse_points(GB_CENTRE, GB_AXES, GB_ANGLE, steps)]

    def fundus(self) -> Point:
        return self.at(*along_major(0.85))

    def plane_path(self) -> list[Point]:
        """The areolar plane between gallbladder and liver: the upper border of the gallbladder."""
        return [self.at(*p) for p in upper_border(-0.55, 0.6, 9)]


def ellipse_points(centre: Point, axes: Point, angle: float, steps: int) -> list[Point]:
    cx, cy = centre
    a, b = axes
    cos_t, sin_t = math.cos(angle), math.sin(angle)
    points = []
    for i in range(steps):
        t = 2 * math.pi * i / steps
        x, y = a * math.cos(t), b * math.sin(t)
        points.append((cx + x * cos_t - y * sin_t, cy + x * sin_t + y * cos_t))
    return points


def along_major(fraction: float) -> Point:
    """The base point ``fraction`` of the gallbladder's half length from its centre (+ toward the fundus)."""
    a = GB_AXES[0] * fraction
    return (GB_CENTRE[0] + a * math.cos(GB_ANGLE), GB_CENTRE[1] + a * math.sin(GB_ANGLE))


def upper_border(start: float, stop: float, steps: int) -> list[Point]:
    points = []
    for i in range(steps):
        u = start + (stop - start) * i / (steps - 1)
        t = math.acos(max(-1.0, min(1.0, u)))
        x, y = GB_AXES[0] * math.cos(t), -GB_AXES[1] * math.sin(t)
        cos_t, sin_t = math.cos(GB_ANGLE), math.sin(GB_ANGLE)
        points.append((GB_CENTRE[0] + x * cos_t - y * sin_t, GB_CENTRE[1] + x * sin_t + y * cos_t))
    return points


def zone_box(anatomy: Anatomy, phase: str) -> Box:
    """The Go Zone of ``phase`` on this frame's anatomy, in original pixels (rounded to 0.1 px)."""
    if phase == "D":
        xs, ys = zip(*anatomy.plane_path(), strict=True)
        margin = 14 * anatomy.scale
        corners = (min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin)
    else:
        x1, y1, x2, y2 = ZONES[phase]
        corners = (*anatomy.at(x1, y1), *anatomy.at(x2, y2))
    box = fit_box(*corners, WIDTH, HEIGHT).box
    return Box(*(round(c, 1) for c in box.as_tuple()))


def make_anatomy(phase: str, seed: int) -> Anatomy:
    """The seeded layout of a frame in ``phase``: shift, scale, tint and 1-2 instruments."""
    rng = random.Random(seed)
    base = Anatomy(phase, rng.uniform(-40, 40), rng.uniform(-25, 25), rng.uniform(0.92, 1.08),
                   (rng.randint(-18, 18), rng.randint(-12, 12), rng.randint(-10, 10)))
    working = _working_instrument(base, rng)
    tools = (working,) if rng.random() < 0.25 else (_grasper(base, rng), working)
    return Anatomy(base.phase, base.dx, base.dy, base.scale, base.tint, tools)


def _grasper(anatomy: Anatomy, rng: random.Random) -> Instrument:
    fx, fy = anatomy.fundus()
    return Instrument("grasper", "upper right", (WIDTH + 30, rng.uniform(20, 90)),
                      (fx + rng.uniform(-10, 10), fy + rng.uniform(-6, 10)), "retract", "gallbladder")


def _working_instrument(anatomy: Anatomy, rng: random.Random) -> Instrument:
    phase = anatomy.phase
    if phase == "D":
        plane = anatomy.plane_path()
        tip = plane[rng.randint(2, 5)]
        entry = (rng.uniform(440, 600), HEIGHT + 30)
        return Instrument("hook", "bottom", entry, tip, "dissect", "gallbladder")
    if phase == "C":
        (ax, ay), (bx, by) = anatomy.path(DUCT_PATH[:2])
        tip = ((ax + bx) / 2 + rng.uniform(-6, 6), (ay + by) / 2 + rng.uniform(-4, 4))
        return Instrument("clipper", "left", (-30, rng.uniform(360, 440)), tip, "clip", "cystic_duct")
    box = zone_box(anatomy, phase)
    cx, cy = box.center
    tip = (cx + rng.uniform(-15, 15), cy + rng.uniform(-10, 10))
    target = "peritoneum" if phase == "A" else rng.choice(("cystic_duct", "cystic_artery"))
    entry_y = rng.uniform(320, 470) if phase == "A" else rng.uniform(400, 470)
    side = "left" if phase == "A" else "lower left"
    return Instrument("hook", side, (-30, entry_y), tip, "dissect", target)


@dataclass(frozen=True)
class DemoCase:
    """One demo frame: case key (``demo/<video>/<index:06d>``), reference phase and Go Zone, and its seed."""

    key: str
    video: str
    frame_index: int
    phase: str
    box: Box
    seed: int

    @property
    def image(self) -> str:
        """The frame's path relative to the pack folder."""
        return f"frames/{self.video}/frame_{self.frame_index:06d}.png"

    def anatomy(self) -> Anatomy:
        return make_anatomy(self.phase, self.seed)


def demo_cases(dataset: str = "demo") -> tuple[DemoCase, ...]:
    """The 16 demo cases, video by video in surgical order, frames 125 apart (0.2 fps of 25 fps)."""
    cases = []
    for video_number, (video, phases) in enumerate(VIDEO_PHASES.items(), start=1):
        for position, phase in enumerate(phases):
            index = position * FRAME_STEP
            seed = 1000 * video_number + position
            box = zone_box(make_anatomy(phase, seed), phase)
            cases.append(DemoCase(f"{dataset}/{video}/{index:06d}", video, index, phase, box, seed))
    return tuple(cases)
