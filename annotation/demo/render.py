"""Draw one synthetic laparoscopic-style frame with Pillow: tissue, liver, gallbladder, the phase's
structures, instruments, the scope's dark vignette and the "SYNTHETIC DEMO" watermark. No patient data."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from annotation.demo.scene import (
    ARTERY_PATH,
    CBD_PATH,
    DUCT_PATH,
    HEIGHT,
    TRIANGLE,
    WIDTH,
    Anatomy,
    Instrument,
    Point,
)

WATERMARK = "SYNTHETIC DEMO - NOT PATIENT DATA"
SIZE = (WIDTH, HEIGHT)
Colour = tuple[int, int, int]


def render_frame(anatomy: Anatomy, seed: int) -> Image.Image:
    """The RGB frame of ``anatomy``; the same ``seed`` draws the same pixels."""
    rng = random.Random(seed)
    frame = _smooth_noise(rng, (24, 14), _tinted((168, 72, 74), anatomy.tint), 34)
    _paint_anatomy(frame, anatomy)
    frame = ImageChops.multiply(frame, Image.merge("RGB", (_shade(rng),) * 3))
    frame = frame.filter(ImageFilter.GaussianBlur(1.1))
    _paint_highlights(frame, rng)
    for tool in anatomy.instruments:
        _paint_instrument(frame, tool)
    frame = _vignette(frame, anatomy)
    _watermark(frame)
    return frame


def _tinted(colour: Colour, tint: Colour) -> Colour:
    return tuple(max(0, min(255, c + t)) for c, t in zip(colour, tint, strict=True))


def _smooth_noise(rng: random.Random, cells: tuple[int, int], colour: Colour, spread: int) -> Image.Image:
    """Low-frequency colour noise around ``colour``: random cells upsampled bicubically."""
    data = bytearray()
    for _ in range(cells[0] * cells[1]):
        shift = rng.randint(-spread, spread)
        data += bytes(max(0, min(255, c + shift + rng.randint(-8, 8))) for c in colour)
    small = Image.frombytes("RGB", cells, bytes(data))
    return small.resize(SIZE, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))


def _shade(rng: random.Random) -> Image.Image:
    """Lumpy lighting (values 205-255) that gives every surface the same wet, uneven look."""
    small = Image.frombytes("L", (60, 34), bytes(rng.randint(205, 255) for _ in range(60 * 34)))
    return small.resize(SIZE, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))


def _paint(frame: Image.Image, colour: Colour, draw_mask, blur: float = 2.5) -> None:
    """Blend ``colour`` into ``frame`` through a soft mask that ``draw_mask(ImageDraw)`` draws."""
    mask = Image.new("L", SIZE, 0)
    draw_mask(ImageDraw.Draw(mask))
    drawn = mask.getbbox()
    if drawn is None:
        return
    # Blur and blend only around what was drawn: blurring whole frames made rendering four times slower.
    margin = math.ceil(3 * blur) + 1
    region = (max(0, drawn[0] - margin), max(0, drawn[1] - margin),
              min(WIDTH, drawn[2] + margin), min(HEIGHT, drawn[3] + margin))
    mask = mask.crop(region)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    frame.paste(colour, region, mask)


def _tube(path: list[Point], width: float, fill: int = 255):
    return lambda d: d.line(path, fill=fill, width=max(1, round(width)), joint="curve")


def _paint_anatomy(frame: Image.Image, anatomy: Anatomy) -> None:
    s, phase = anatomy.scale, anatomy.phase
    _paint(frame, _tinted((118, 52, 40), anatomy.tint), lambda d: d.ellipse(anatomy.liver_box(), fill=255), 4)
    cbd_opacity = 90 if phase in "AB" else 200
    _paint(frame, (196, 190, 150), _tube(anatomy.path(CBD_PATH), 22 * s, cbd_opacity), 4)
    if phase in "AB":
        _paint_fat(frame, anatomy, 230 if phase == "A" else 150)
    if phase == "B":
        _paint(frame, (222, 208, 190), _tube(anatomy.path(DUCT_PATH), 15 * s, 120), 4)
    if phase == "C":
        _paint(frame, (236, 226, 212), _tube(anatomy.path(DUCT_PATH), 16 * s), 2)
        _paint(frame, (226, 176, 160), _tube(anatomy.path(ARTERY_PATH), 9 * s), 2)
    if phase == "D":
        _paint(frame, (230, 220, 206), _tube(anatomy.path(DUCT_PATH[1:]), 16 * s), 2)
        _paint(frame, (222, 172, 156), _tube(anatomy.path(ARTERY_PATH[1:]), 9 * s), 2)
    gallbladder = anatomy.gallbladder()
    _paint(frame, _tinted((150, 168, 72), anatomy.tint), lambda d: d.polygon(gallbladder, fill=255), 3)
    _paint(frame, (112, 128, 52), lambda d: d.polygon(anatomy.gallbladder(), outline=255, width=9), 5)
    _paint(frame, (186, 196, 120), _tube(anatomy.gallbladder()[30:42], 10 * s, 140), 6)  # light on the wall
    if phase == "D":
        _paint(frame, (238, 234, 222), _tube(anatomy.plane_path(), 9 * s, 220), 3)
    if phase in "CD":
        _paint_clips(frame, anatomy)


def _paint_fat(frame: Image.Image, anatomy: Anatomy, opacity: int) -> None:
    """Fibro-fatty tissue and peritoneum covering Calot's triangle (phases A and B)."""
    triangle = anatomy.path(TRIANGLE)
    _paint(frame, (214, 170, 104), lambda d: d.polygon(triangle, fill=opacity), 7)
    xs, ys = zip(*triangle, strict=True)
    cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)

    def lobules(d: ImageDraw.ImageDraw) -> None:
        for i in range(7):
            angle = i * 0.9
            x, y = cx + 38 * math.cos(angle) * anatomy.scale, cy + 30 * math.sin(angle) * anatomy.scale
            d.ellipse((x - 16, y - 11, x + 16, y + 11), fill=opacity)

    _paint(frame, (232, 200, 120), lobules, 5)


def _paint_clips(frame: Image.Image, anatomy: Anatomy) -> None:
    (ax, ay), (bx, by) = anatomy.path(DUCT_PATH[1:])
    fractions = (0.35, 0.55) if anatomy.phase == "C" else (0.05, 0.2)
    length = 13 * anatomy.scale

    def clips(d: ImageDraw.ImageDraw) -> None:
        for f in fractions:
            x, y = ax + (bx - ax) * f, ay + (by - ay) * f
            d.line((x - length * 0.55, y - length, x + length * 0.55, y + length), fill=255, width=5)

    _paint(frame, (214, 216, 222), clips, 0.8)


def _paint_highlights(frame: Image.Image, rng: random.Random) -> None:
    """Small specular reflections of the light source on wet tissue."""
    spots = [(rng.uniform(160, 700), rng.uniform(80, 400), rng.uniform(1.5, 4.5)) for _ in range(6)]

    def draw(d: ImageDraw.ImageDraw) -> None:
        for x, y, r in spots:
            d.ellipse((x - r * 2.4, y - r, x + r * 2.4, y + r), fill=170)

    _paint(frame, (255, 250, 245), draw, 1.2)


def _paint_instrument(frame: Image.Image, tool: Instrument) -> None:
    (ex, ey), (tx, ty) = tool.entry, tool.tip
    length = math.hypot(tx - ex, ty - ey)
    ux, uy = (tx - ex) / length, (ty - ey) / length
    nx, ny = -uy, ux
    jaw = 38.0
    sx, sy = tx - ux * jaw, ty - uy * jaw  # where the shaft ends and the jaws begin
    half = 13.0
    shaft = [(ex + nx * half, ey + ny * half), (sx + nx * half, sy + ny * half),
             (sx - nx * half, sy - ny * half), (ex - nx * half, ey - ny * half)]
    body = (42, 44, 48) if tool.name == "hook" else (132, 136, 142)  # hooks are insulated black
    _paint(frame, body, lambda d: d.polygon(shaft, fill=255), 1)
    shine = [(ex + nx * 5, ey + ny * 5), (sx + nx * 5, sy + ny * 5)]
    _paint(frame, (214, 218, 224), _tube(shine, 4, 200), 2)
    _paint(frame, (88, 90, 96), lambda d: _draw_tip(d, tool, (sx, sy), (ux, uy), jaw), 0.8)


def _draw_tip(d: ImageDraw.ImageDraw, tool: Instrument, start: Point, direction: Point, jaw: float) -> None:
    (sx, sy), (ux, uy) = start, direction
    if tool.name == "hook":
        ex, ey = sx + ux * jaw, sy + uy * jaw
        d.line([(sx, sy), (ex, ey), (ex - uy * 10, ey + ux * 10)], fill=255, width=5, joint="curve")
        return
    spread = 0.32 if tool.name == "clipper" else 0.22
    for sign in (1, -1):
        cos_a, sin_a = math.cos(sign * spread), math.sin(sign * spread)
        jx, jy = ux * cos_a - uy * sin_a, ux * sin_a + uy * cos_a
        d.line([(sx, sy), (sx + jx * jaw, sy + jy * jaw)], fill=255, width=9)


def _vignette(frame: Image.Image, anatomy: Anatomy) -> Image.Image:
    """The round field of view of a laparoscope: bright centre, dark falloff, black corners."""
    radius = 400
    gradient = Image.radial_gradient("L").resize((2 * radius, 2 * radius), Image.Resampling.BILINEAR)
    # Gradient value 181 is the inscribed circle's edge; keep the centre bright and fall to black past it.
    lut = [255 if v < 120 else max(0, round(255 * (1 - (v - 120) / 70))) for v in range(256)]
    mask = Image.new("L", SIZE, 0)
    mask.paste(gradient.point(lut), (round(WIDTH / 2 - radius + anatomy.dx / 3), round(HEIGHT / 2 - radius)))
    return Image.composite(frame, Image.new("RGB", SIZE, (6, 4, 4)), mask)


def _watermark(frame: Image.Image) -> None:
    draw = ImageDraw.Draw(frame)
    font = _font(13)
    left, top, right, bottom = draw.textbbox((0, 0), WATERMARK, font=font)
    x, y = WIDTH - (right - left) - 10, HEIGHT - (bottom - top) - 10
    draw.text((x, y), WATERMARK, fill=(235, 235, 235), font=font)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, ValueError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
