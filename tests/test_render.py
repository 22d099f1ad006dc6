"""Rendering a comparison: untrusted model text stays inert, levels are named and collapsible, boxes are
drawn at the right pixels in the models' colours, the reference is dashed, IoU is shown."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from app.render import (
    FALLBACK_COLOR,
    REFERENCE_COLOR,
    DrawnBox,
    comparison_image,
    draw_boxes,
    legend_html,
    line_width,
    model_panel_html,
    panels_html,
    safe_color,
)
from models.boxes import Box
from models.compare import CaseComparison, ModelView, Reference
from models.parsing import ParsedBox, ParsedOutput

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](javascript:alert(1))"


def _comparison(*views: ModelView, reference: Reference | None = None, task: str = "gozone",
                image: Image.Image | None = None) -> CaseComparison:
    return CaseComparison(1, "demo/v/000001", "demo", "laparoscopic_cholecystectomy", task, 200, 100,
                          reference, views, image)


def _view(parsed: ParsedOutput | None = None, **changes) -> ModelView:
    fields = {"model": "m-one", "color": "#1f77b4", "backend": "replay", "status": "cached", "run_id": 1,
              "parsed": parsed, **changes}
    return ModelView(**fields)


def _hostile_output() -> ParsedOutput:
    return ParsedOutput(thinking=HOSTILE, phase_thinking=HOSTILE, levels={1: HOSTILE, 2: HOSTILE, 3: HOSTILE},
                        answer=HOSTILE, phase="B", boxes=[ParsedBox(HOSTILE, (10.0, 10.0, 50.0, 40.0))],
                        rationale={"location": HOSTILE, "exposure": HOSTILE, "next_action": HOSTILE,
                                   "critical_risk": HOSTILE}, warnings=[HOSTILE])


def _assert_inert(html: str) -> None:
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in html.lower() and "<img" not in html.lower() and "<a " not in html.lower()
    assert "href" not in html.lower()
    # The markdown link stays literal text: it is never turned into a link element.
    assert "[click](javascript:alert(1))" in html


def test_hostile_model_text_renders_as_inert_escaped_text_everywhere():
    view = _view(_hostile_output(), iou=0.5, latency_ms=12.0)
    html = panels_html(_comparison(view, reference=Reference("ref", "B", "Dissection", Box(0, 0, 20, 20))))
    _assert_inert(html)
    assert html.count("&lt;script&gt;") == 11  # answer, box label, 3 levels, phase turn, 4 rationale, warning


def test_hostile_text_while_streaming_and_in_errors_is_inert():
    streaming = _view(status="streaming", partial=HOSTILE)
    failed = _view(status="error", error=HOSTILE, model="m-two")
    html = panels_html(_comparison(streaming, failed))
    _assert_inert(html)


def test_a_colour_that_is_not_hex_never_reaches_a_style_attribute():
    evil = '#fff" onmouseover="alert(1)'
    assert safe_color(evil) == FALLBACK_COLOR and safe_color("#A1b2C3") == "#A1b2C3"
    html = model_panel_html(_view(ParsedOutput(answer="x"), color=evil), _comparison())
    assert "onmouseover" not in html and FALLBACK_COLOR in html


def test_levels_are_collapsible_sections_named_by_level_and_missing_ones_say_so():
    parsed = ParsedOutput(levels={1: "a hook at the centre", 3: "so the phase is B"}, answer="B", phase="B")
    html = model_panel_html(_view(parsed), _comparison(task="phase"))
    summaries = re.findall(r"<details( open)?><summary>([^<]*)</summary>", html)
    assert summaries == [(" open", "Level 1 - perceptual grounding"),
                         ("", "Level 2 - relational understanding (not given)"),
                         (" open", "Level 3 - contextual reasoning")]
    assert html.index("Answer: B") < html.index("Level 1")  # the answer comes first


def test_the_go_zone_rationale_warnings_and_latency_are_shown():
    parsed = ParsedOutput(answer="[box]", phase="C", rationale={"location": "duct", "exposure": "good",
                          "next_action": "clip", "critical_risk": "CBD"}, warnings=["no phase turn"])
    html = model_panel_html(_view(parsed, status="predicted", latency_ms=1234.0, phase_correct=False),
                            _comparison())
    for label in ("<dt>Location</dt><dd>duct</dd>", "<dt>Exposure</dt>", "<dt>Next action</dt>",
                  "<dt>Critical risk</dt><dd>CBD</dd>", "no phase turn", "Latency: 1,234 ms",
                  "differs from the reference"):
        assert label in html


def test_iou_to_the_reference_is_shown_in_the_panel_and_the_legend():
    parsed = ParsedOutput(answer="box", boxes=[ParsedBox("go zone", (10.0, 10.0, 50.0, 40.0))])
    view = _view(parsed, iou=0.4237)
    comparison = _comparison(view, reference=Reference("ref", None, None, Box(20, 20, 60, 50)))
    assert "IoU to reference: 0.42" in panels_html(comparison)
    legend = legend_html(comparison, shown={"m-one"})
    assert "m-one: 1 box, IoU 0.42" in legend and "reference Go Zone (dashed)" in legend


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))


def test_boxes_are_drawn_at_their_pixels_in_their_colours():
    frame = Image.new("RGB", (320, 160), (0, 0, 0))
    out = draw_boxes(frame, [DrawnBox("a", "#ff0000", Box(40, 60, 120, 140)),
                             DrawnBox("b", "#00ff00", Box(200, 70, 300, 150))])
    width = line_width(out.size)
    assert out.getpixel((80, 139)) == (255, 0, 0)  # bottom edge of box a
    assert out.getpixel((40, 100)) == (255, 0, 0)  # left edge of box a
    assert out.getpixel((300, 110)) == (0, 255, 0)  # right edge of box b
    assert out.getpixel((80, 100)) == (0, 0, 0)  # inside a box stays the frame
    assert out.getpixel((40 + width + 1, 100)) == (0, 0, 0)
    assert out.getpixel((20, 20)) == (0, 0, 0)  # outside every box
    assert frame.getpixel((40, 100)) == (0, 0, 0)  # the input image is not drawn on
    # The name strip sits above the box in the box's colour.
    assert out.getpixel((41, 59)) == (255, 0, 0)


def test_the_reference_box_is_dashed():
    frame = Image.new("RGB", (400, 200), (0, 0, 0))
    out = draw_boxes(frame, [], reference=Box(100, 100, 300, 180))
    bottom = [out.getpixel((x, 180)) for x in range(100, 301)]
    white = _rgb(REFERENCE_COLOR)
    drawn = [pixel == white for pixel in bottom]
    assert 0.4 < sum(drawn) / len(drawn) < 0.8  # dashes and gaps
    runs = sum(1 for a, b in zip(drawn, drawn[1:]) if a and not b)
    assert runs >= 5
    assert out.getpixel((100, 140)) in {white, (0, 0, 0)} and any(
        out.getpixel((100, y)) == white for y in range(110, 175))  # left edge dashed too


@pytest.mark.parametrize("shown", [{"m-one", "m-two"}, {"m-two"}])
def test_the_drawing_shows_only_the_models_ticked(shown):
    frame = Image.new("RGB", (200, 100), (0, 0, 0))
    one = _view(ParsedOutput(boxes=[ParsedBox(None, (10.0, 30.0, 60.0, 80.0))]), color="#ff0000")
    two = _view(ParsedOutput(boxes=[ParsedBox(None, (120.0, 30.0, 180.0, 80.0))]), model="m-two",
                color="#0000ff")
    out = comparison_image(_comparison(one, two, image=frame), shown)
    assert (out.getpixel((10, 55)) == (255, 0, 0)) == ("m-one" in shown)
    assert out.getpixel((180, 55)) == (0, 0, 255)
