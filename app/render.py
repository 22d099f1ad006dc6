"""Rendering a comparison: HTML panels (every piece of model text escaped) and the frame with boxes drawn.

Model output is untrusted. It is only ever placed in HTML through ``esc`` (html.escape with quotes), never
through Markdown, so no tag, script, image or link a model writes can render or run. Colours come from the
model registry and are checked again here; anything that is not ``#rrggbb`` becomes grey.

Blinded review items (``blind_panel_html``, ``blind_image``) use one neutral style for every output: the
letter and its neutral colour from the BlindItem, the same sections in the same order, nothing per model.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from models.boxes import Box
from models.compare import TASK_LABELS, CaseComparison, ModelView
from models.parsing import RATIONALE_PARTS, ParsedOutput
from review.blinding import BlindOutput

LEVEL_NAMES = {1: "Level 1 - perceptual grounding", 2: "Level 2 - relational understanding",
               3: "Level 3 - contextual reasoning"}
RATIONALE_LABELS = {"location": "Location", "exposure": "Exposure", "next_action": "Next action",
                    "critical_risk": "Critical risk"}
FALLBACK_COLOR = "#7f7f7f"
REFERENCE_COLOR = "#ffffff"
_HEX = re.compile(r"#[0-9a-fA-F]{6}")
_STATUS_TEXT = {"cached": "from cache", "predicted": "just run", "pending": "waiting",
                "loading": "loading the model...", "streaming": "generating...", "error": "failed"}

PANEL_CSS = """
.sr-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.sr-panel { border: 1px solid #8884; border-top-width: 6px; border-radius: 8px; padding: 10px 12px; }
.sr-panel h3 { margin: 0 0 6px 0; font-size: 1.05em; }
.sr-meta { opacity: 0.75; font-size: 0.85em; font-weight: normal; }
.sr-text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; }
.sr-answer { font-weight: 600; }
.sr-panel details { margin: 4px 0; } .sr-panel summary { cursor: pointer; font-weight: 600; }
.sr-panel dt { font-weight: 600; margin-top: 4px; } .sr-panel dd { margin: 0 0 0 10px; }
.sr-warn { color: #b45309; font-size: 0.9em; } .sr-error { color: #b91c1c; }
.sr-swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: middle; }
.sr-legend { list-style: none; padding: 0; margin: 0; } .sr-legend li { margin: 2px 0; }
"""


def esc(text: object) -> str:
    """``text`` as inert HTML text: every <, >, &, quote escaped."""
    return html.escape("" if text is None else str(text), quote=True)


def safe_color(value: object) -> str:
    """A registry colour if it is exactly #rrggbb, else grey (a colour is placed inside a style attribute)."""
    return value if isinstance(value, str) and _HEX.fullmatch(value) else FALLBACK_COLOR


def _details(title: str, body: str, *, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(title)}</summary>{body}</details>"


def _text(value: object, css: str = "sr-text") -> str:
    return f'<div class="{css}">{esc(value)}</div>'


def _levels_html(parsed: ParsedOutput) -> str:
    parts = []
    for level, name in LEVEL_NAMES.items():
        body = parsed.levels.get(level)
        title = name if body else f"{name} (not given)"
        parts.append(_details(title, _text(body or "The model gave no reasoning at this level."),
                              open_=bool(body)))
    if parsed.phase_thinking:
        parts.append(_details("Phase turn reasoning", _text(parsed.phase_thinking)))
    if parsed.thinking and not parsed.levels:
        parts.append(_details("Reasoning (not in levels)", _text(parsed.thinking), open_=True))
    return "".join(parts)


def _answer_html(view: ModelView, parsed: ParsedOutput, comparison: CaseComparison) -> str:
    parts = [f'<div class="sr-answer">Answer: {esc(parsed.answer or "(no answer found)")}</div>']
    if parsed.phase is not None or comparison.task in {"phase", "gozone"}:
        verdict = {True: " - matches the reference", False: " - differs from the reference"}.get(
            view.phase_correct, "")
        parts.append(_text(f"Phase: {parsed.phase or 'none recognised'}{verdict}"))
    for b in parsed.boxes:
        flags = "".join(f" ({flag})" for flag, on in (("clipped", b.clipped), ("corners swapped", b.swapped))
                        if on)
        x1, y1, x2, y2 = b.box
        parts.append(_text(f"Box {b.label or ''}: ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f}) px{flags}"))
    if view.iou is not None:
        parts.append(f'<div class="sr-text sr-iou">IoU to reference: {view.iou:.2f}</div>')
    return "".join(parts)


def _rationale_html(parsed: ParsedOutput) -> str:
    items = [f"<dt>{RATIONALE_LABELS[p]}</dt><dd>{esc(parsed.rationale[p])}</dd>"
             for p in RATIONALE_PARTS if parsed.rationale.get(p)]
    return f'<dl class="sr-rationale">{"".join(items)}</dl>' if items else ""


def _footer_html(view: ModelView, parsed: ParsedOutput | None) -> str:
    warnings = "".join(f"<li>{esc(w)}</li>" for w in (parsed.warnings if parsed else ()))
    parts = [f'<div class="sr-warn">Parse warnings<ul>{warnings}</ul></div>'] if warnings else []
    if view.status == "cached" and not view.latency_ms:
        parts.append(_text("Latency: served from the cache", "sr-meta"))
    elif view.latency_ms is not None:
        parts.append(_text(f"Latency: {view.latency_ms:,.0f} ms", "sr-meta"))
    return "".join(parts)


def model_panel_html(view: ModelView, comparison: CaseComparison) -> str:
    """One model's panel: answer first, then the three levels, the Go Zone rationale, warnings, latency."""
    color = safe_color(view.color)
    head = (f'<h3><span class="sr-swatch" style="background:{color}"></span>{esc(view.model)} '
            f'<span class="sr-meta">{esc(view.backend)} - {esc(_STATUS_TEXT.get(view.status, view.status))}'
            f"</span></h3>")
    if view.status == "error":
        body = _text(view.error, "sr-text sr-error")
    elif view.parsed is not None:
        parsed = view.parsed
        body = _answer_html(view, parsed, comparison) + _levels_html(parsed) + _rationale_html(parsed)
    elif view.partial:
        body = _details("Output so far", _text(view.partial), open_=True)
    else:
        body = _text(_STATUS_TEXT.get(view.status, ""), "sr-meta")
    return (f'<section class="sr-panel" data-model="{esc(view.model)}" style="border-top-color:{color}">'
            f"{head}{body}{_footer_html(view, view.parsed)}</section>")


def header_html(comparison: CaseComparison) -> str:
    reference = comparison.reference
    if reference is None:
        ref = "no current reference label"
    else:
        ref = f"reference phase {reference.phase or 'none'}" + (
            f" - {reference.phase_name}" if reference.phase_name else "")
    return (f'<div class="sr-meta">Case {esc(comparison.case_key)} - {esc(TASK_LABELS[comparison.task])} - '
            f"{esc(ref)}</div>")


def panels_html(comparison: CaseComparison) -> str:
    """The header line and one panel per model, side by side."""
    panels = "".join(model_panel_html(view, comparison) for view in comparison.views)
    return f'{header_html(comparison)}<div class="sr-grid">{panels}</div>'


def legend_html(comparison: CaseComparison, shown: Collection[str]) -> str:
    """Which colour is which model, its box count and IoU to the reference, and the dashed reference."""
    items = []
    for view in comparison.views:
        color = safe_color(view.color)
        boxes = len(view.boxes)
        detail = (f"{boxes} box{'es' if boxes != 1 else ''}" if view.parsed
                  else _STATUS_TEXT.get(view.status, ""))
        if view.iou is not None:
            detail += f", IoU {view.iou:.2f}"
        hidden = "" if view.model in shown else " (hidden)"
        items.append(f'<li><span class="sr-swatch" style="border:3px solid {color}"></span>'
                     f"{esc(view.model)}: {esc(detail)}{hidden}</li>")
    if comparison.reference is not None and comparison.reference.box is not None:
        items.append('<li><span class="sr-swatch" style="border:3px dashed #888"></span>'
                     "reference Go Zone (dashed)</li>")
    return f'<ul class="sr-legend">{"".join(items)}</ul>'


def progress_text(comparison: CaseComparison) -> str:
    counts = {status: sum(v.status == status for v in comparison.views) for status in _STATUS_TEXT}
    busy = [f"{v.model} {_STATUS_TEXT[v.status]}" for v in comparison.views
            if v.status in {"loading", "streaming"}]
    done = counts["cached"] + counts["predicted"] + counts["error"]
    text = (f"{done}/{len(comparison.views)} models done: {counts['cached']} from cache, "
            f"{counts['predicted']} run now, {counts['error']} failed")
    return text + (f"; {', '.join(busy)}" if busy else "")


# --- the frame with boxes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DrawnBox:
    label: str
    color: str
    box: Box


def line_width(size: tuple[int, int]) -> int:
    return max(2, round(min(size) / 160))


def _font(size: tuple[int, int]) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(12, round(min(size) / 32)))


def _corners(box: Box) -> tuple[int, int, int, int]:
    return round(box.x1), round(box.y1), round(box.x2), round(box.y2)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Box, color: str, width: int) -> None:
    x1, y1, x2, y2 = _corners(box)
    dash, gap = 4 * width, 3 * width
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)),
                               ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, dash + gap):
            end = min(start + dash, length)
            points = [(ax + (bx - ax) * t / length, ay + (by - ay) * t / length) for t in (start, end)]
            draw.line(points, fill=color, width=width)


def _tag(draw: ImageDraw.ImageDraw, box: Box, text: str, color: str, font: ImageFont.ImageFont) -> None:
    """The name on a filled strip of the box's colour, above the box (inside it at the top edge)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 4
    x, y = round(box.x1), round(box.y1) - h
    if y < 0:
        y = round(box.y1)
    draw.rectangle([x, y, x + w, y + h], fill=color)
    draw.text((x + 3 - left, y + 2 - top), text, fill="#ffffff", font=font)


def draw_boxes(image: Image.Image, boxes: Sequence[DrawnBox], reference: Box | None = None, *,
               reference_label: str = "reference") -> Image.Image:
    """A copy of ``image`` with each box outlined in its colour and named, and the reference box dashed."""
    out = image.convert("RGB")
    draw, width, font = ImageDraw.Draw(out), line_width(out.size), _font(out.size)
    if reference is not None:
        _dashed_rectangle(draw, reference, REFERENCE_COLOR, width)
    for drawn in boxes:
        draw.rectangle(_corners(drawn.box), outline=safe_color(drawn.color), width=width)
    if reference is not None:
        _tag(draw, reference, reference_label, "#555555", font)
    for drawn in boxes:
        _tag(draw, drawn.box, drawn.label, safe_color(drawn.color), font)
    return out


def comparison_image(comparison: CaseComparison, shown: Collection[str]) -> Image.Image | None:
    """The compared frame with the boxes of the ``shown`` models and the reference Go Zone."""
    if comparison.image is None:
        return None
    boxes = [DrawnBox(view.model, view.color, box) for view in comparison.views if view.model in shown
             for box in view.boxes]
    reference = comparison.reference.box if comparison.reference is not None else None
    return draw_boxes(comparison.image, boxes, reference)


# --- blinded outputs: one neutral style for every model -------------------------------------------------

BLIND_CSS = PANEL_CSS + """
.sr-blind h3 { display: flex; align-items: center; }
.sr-none { opacity: 0.6; font-style: italic; }
"""


def _blind_levels_html(output: BlindOutput) -> str:
    parts = []
    for level, name in LEVEL_NAMES.items():
        body = output.levels.get(str(level))
        shown = _text(body) if body else _text("No reasoning at this level.", "sr-text sr-none")
        parts.append(_details(name if body else f"{name} (not given)", shown, open_=bool(body)))
    if output.reasoning:
        parts.append(_details("Reasoning (not in levels)", _text(output.reasoning), open_=True))
    return "".join(parts)


def _blind_rationale_html(output: BlindOutput) -> str:
    """The four Go Zone rationale parts, each always present so every output has the same structure."""
    items = [f"<dt>{RATIONALE_LABELS[p]}</dt>"
             + (f"<dd>{esc(output.rationale[p])}</dd>" if output.rationale.get(p)
                else '<dd class="sr-none">not given</dd>') for p in RATIONALE_PARTS]
    return _details("Go Zone rationale", f'<dl class="sr-rationale">{"".join(items)}</dl>', open_=True)


def _blind_boxes_html(output: BlindOutput) -> str:
    if not output.boxes:
        return _text("Boxes: none", "sr-text sr-none")
    lines = []
    for shown in output.boxes:
        x1, y1, x2, y2 = shown["box"]
        label = f" {shown['label']}" if shown.get("label") else ""
        lines.append(_text(f"Box{label}: ({x1}, {y1}) - ({x2}, {y2}) px"))
    return "".join(lines)


def blind_panel_html(output: BlindOutput, *, boxes: bool, rationale: bool) -> str:
    """One anonymous output under its letter in its neutral letter colour: answer, Level 1/2/3 as named
    collapsible sections, then (when the item's task has them) boxes and the Go Zone rationale. Every
    output of an item gets the same sections, given or not, so the layout says nothing about the model."""
    color = safe_color(output.color)
    head = (f'<h3><span class="sr-swatch" style="background:{color}"></span>Output {esc(output.letter)}'
            "</h3>")
    body = f'<div class="sr-answer">Answer: {esc(output.answer or "(no answer given)")}</div>'
    body += (_blind_boxes_html(output) if boxes else "") + _blind_levels_html(output)
    body += _blind_rationale_html(output) if rationale else ""
    return (f'<section class="sr-panel sr-blind" data-letter="{esc(output.letter)}" '
            f'style="border-top-color:{color}">{head}{body}</section>')


def blind_image(image: Image.Image, outputs: Sequence[BlindOutput]) -> Image.Image:
    """The frame with every output's boxes in its letter's neutral colour, tagged with the letter."""
    boxes = [DrawnBox(output.letter, output.color, Box(*shown["box"])) for output in outputs
             for shown in output.boxes]
    return draw_boxes(image, boxes)
