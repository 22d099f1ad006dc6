"""Property-based tests of the box codecs in models/boxes.py: every convention round-trips to canonical pixels
within float tolerance, and a box inside the frame stays inside it through any chain of conversions."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from models.boxes import (
    Box,
    BoxError,
    canonical_to_coco,
    canonical_to_labelme,
    canonical_to_labelstudio,
    canonical_to_qwen25,
    canonical_to_rel1000,
    coco_to_canonical,
    fit_box,
    labelme_to_canonical,
    labelstudio_to_canonical,
    qwen25_to_canonical,
    rel1000_to_canonical,
    smart_resize,
)

MIN_SIDE = 0.01  # pixels; a box thinner than this is not a Go Zone anyone drew
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])

sides = st.integers(min_value=1, max_value=8192)


@st.composite
def frame_and_box(draw, max_aspect: float | None = None) -> tuple[int, int, Box]:
    """A frame size and a box inside it (edges included), at least MIN_SIDE on each side."""
    width, height = draw(sides), draw(sides)
    if max_aspect is not None:
        assume(max(width, height) / min(width, height) <= max_aspect)
    assume(width >= 2 * MIN_SIDE and height >= 2 * MIN_SIDE)
    fraction = st.floats(min_value=0.0, max_value=1.0, allow_subnormal=False)
    edge_or_inside = st.one_of(st.just(0.0), st.just(1.0), fraction)
    a, b = draw(edge_or_inside), draw(edge_or_inside)
    c, d = draw(edge_or_inside), draw(edge_or_inside)
    x1, x2 = sorted((a * width, b * width))
    y1, y2 = sorted((c * height, d * height))
    assume(x2 - x1 >= MIN_SIDE and y2 - y1 >= MIN_SIDE)
    return width, height, Box(x1, y1, x2, y2)


def close(a: tuple[float, ...], b: tuple[float, ...], scale: float) -> bool:
    return all(math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-9 * scale) for u, v in zip(a, b, strict=True))


def inside(values: tuple[float, float, float, float], width: float, height: float) -> bool:
    x1, y1, x2, y2 = values
    return 0.0 <= x1 < x2 <= width and 0.0 <= y1 < y2 <= height


def corners(box: Box, order: int) -> list[list[float]]:
    """Two opposite corners of ``box`` in one of the four ways a LabelMe user can drag a rectangle."""
    tl, br = [box.x1, box.y1], [box.x2, box.y2]
    tr, bl = [box.x2, box.y1], [box.x1, box.y2]
    return [[tl, br], [br, tl], [tr, bl], [bl, tr]][order]


@SETTINGS
@given(frame_and_box(), st.integers(0, 3))
def test_labelme_points_in_any_corner_order_are_the_canonical_box(fb, order):
    width, height, box = fb
    fitted = labelme_to_canonical(corners(box, order), width, height)
    assert fitted.box == box and not fitted.clipped
    assert fitted.swapped == (order != 0)
    assert labelme_to_canonical(canonical_to_labelme(box), width, height).box == box


@SETTINGS
@given(frame_and_box())
@example((854, 480, Box(0.0, 0.0, 854.0, 480.0)))
@example((6941, 612, Box(1.0, 438.89551874777976, 6940.999999999999, 612.0)))
def test_label_studio_percent_round_trips_and_stays_inside(fb):
    width, height, box = fb
    x, y, w, h = canonical_to_labelstudio(box, width, height)
    assert 0.0 <= x <= 100.0 and 0.0 <= y <= 100.0 and w > 0 and h > 0
    decoded = labelstudio_to_canonical(x, y, w, h, width, height)
    assert close(decoded, box.as_tuple(), max(width, height))
    assert inside(decoded, width, height)


@SETTINGS
@given(frame_and_box())
def test_coco_xywh_round_trips_and_stays_inside(fb):
    width, height, box = fb
    x, y, w, h = canonical_to_coco(box)
    assert (x, y) == (box.x1, box.y1) and w > 0 and h > 0
    assert math.isclose(w * h, box.area, rel_tol=1e-12)
    decoded = coco_to_canonical(x, y, w, h)
    assert close(decoded, box.as_tuple(), max(width, height))
    assert inside(decoded, width, height)


@SETTINGS
@given(frame_and_box())
@example((246, 345, Box(226.42431196328988, 1.0, 246.0, 3.5)))
def test_relative_1000_round_trips_and_stays_inside(fb):
    width, height, box = fb
    encoded = canonical_to_rel1000(box, width, height)
    assert inside(encoded, 1000.0, 1000.0)
    decoded = rel1000_to_canonical(encoded, width, height)
    assert close(decoded, box.as_tuple(), max(width, height))
    assert inside(decoded, width, height)


@SETTINGS
@given(frame_and_box(max_aspect=150.0))
def test_qwen25_resized_pixels_round_trip_and_stay_inside(fb):
    width, height, box = fb
    input_h, input_w = smart_resize(height, width)
    assert input_w % 28 == 0 and input_h % 28 == 0
    encoded = canonical_to_qwen25(box, width, height)
    assert inside(encoded, input_w, input_h)
    decoded = qwen25_to_canonical(encoded, width, height)
    assert close(decoded, box.as_tuple(), max(width, height))
    assert inside(decoded, width, height)
    # The size read from image_grid_thw gives the same answer as recomputing smart_resize.
    assert qwen25_to_canonical(encoded, width, height, (input_w, input_h)) == decoded


@SETTINGS
@given(frame_and_box(max_aspect=150.0), st.integers(0, 3))
def test_a_chain_through_every_convention_comes_back(fb, order):
    width, height, box = fb
    current = labelme_to_canonical(corners(box, order), width, height).box
    current = Box(*labelstudio_to_canonical(*canonical_to_labelstudio(current, width, height), width, height))
    current = Box(*coco_to_canonical(*canonical_to_coco(current)))
    current = Box(*rel1000_to_canonical(canonical_to_rel1000(current, width, height), width, height))
    current = Box(*qwen25_to_canonical(canonical_to_qwen25(current, width, height), width, height))
    assert close(current.as_tuple(), box.as_tuple(), max(width, height))
    fitted = fit_box(*current.as_tuple(), width, height)
    assert not fitted.clipped and not fitted.swapped and fitted.box == current


@SETTINGS
@given(sides, sides, st.floats(0, 100), st.floats(0, 100), st.floats(0, 100), st.floats(0, 100))
def test_any_label_studio_box_within_the_image_decodes_inside_the_frame(width, height, x, y, w, h):
    assume(x + w <= 100.0 and y + h <= 100.0)
    x1, y1, x2, y2 = labelstudio_to_canonical(x, y, w, h, width, height)
    assert 0.0 <= x1 <= x2 <= width and 0.0 <= y1 <= y2 <= height


def test_a_real_overshoot_in_percent_is_kept_for_fit_box_to_clip():
    decoded = labelstudio_to_canonical(90.0, 0.0, 11.0, 50.0, 200, 100)
    assert decoded[2] == pytest.approx(202.0)
    fitted = fit_box(*decoded, 200, 100)
    assert fitted.clipped and fitted.box.x2 == 200.0


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(sides, sides, finite, finite, finite, finite)
def test_fit_box_orders_and_clips_or_refuses(width, height, x1, y1, x2, y2):
    try:
        fitted = fit_box(x1, y1, x2, y2, width, height)
    except BoxError:
        lx, hx = sorted((x1, x2))
        ly, hy = sorted((y1, y2))
        assert min(hx, width) <= max(lx, 0) or min(hy, height) <= max(ly, 0)
        return
    assert inside(fitted.box.as_tuple(), width, height)
    again = fit_box(*fitted.box.as_tuple(), width, height)
    assert again.box == fitted.box and not again.clipped and not again.swapped


@pytest.mark.parametrize("points", [[[1, 2]], [[1, 2], [3]], "1,2,3,4", None, [[1, 2], [3, 4], [5, 6]]])
def test_labelme_points_of_the_wrong_shape_are_refused(points):
    with pytest.raises(BoxError, match=r"\[\[x1, y1\], \[x2, y2\]\]"):
        labelme_to_canonical(points, 64, 48)


@pytest.mark.parametrize("points", [[[math.nan, 2], [3, 4]], [[1, 2], [math.inf, 4]], [["1", 2], [3, 4]]])
def test_labelme_points_that_are_not_finite_numbers_are_refused(points):
    with pytest.raises(BoxError, match="finite"):
        labelme_to_canonical(points, 64, 48)
