"""One conversion per box convention: each round-trips to canonical original-frame pixels."""

from __future__ import annotations

import math

import pytest

from models.boxes import (
    Box,
    BoxError,
    canonical_to_coco,
    canonical_to_labelstudio,
    canonical_to_qwen25,
    canonical_to_rel1000,
    coco_to_canonical,
    fit_box,
    iou,
    labelstudio_to_canonical,
    qwen25_to_canonical,
    rel1000_to_canonical,
    smart_resize,
)

BOX = Box(100.0, 50.0, 400.0, 300.0)


def test_qwen25_sees_an_854x480_frame_as_840x476():
    assert smart_resize(480, 854) == (476, 840)
    encoded = canonical_to_qwen25(BOX, 854, 480)
    assert encoded[2] == pytest.approx(400 * 840 / 854)
    assert qwen25_to_canonical(encoded, 854, 480) == pytest.approx(BOX.as_tuple())


def test_relative_1000_round_trip():
    assert canonical_to_rel1000(BOX, 854, 480)[3] == pytest.approx(625.0)
    assert rel1000_to_canonical(canonical_to_rel1000(BOX, 854, 480), 854, 480) == pytest.approx(BOX.as_tuple())


def test_label_studio_percent_round_trip():
    x, y, w, h = canonical_to_labelstudio(BOX, 854, 480)
    assert (y, h) == pytest.approx((50 * 100 / 480, 250 * 100 / 480))
    assert labelstudio_to_canonical(x, y, w, h, 854, 480) == pytest.approx(BOX.as_tuple())


def test_coco_xywh_round_trip():
    assert canonical_to_coco(BOX) == (100.0, 50.0, 300.0, 250.0)
    assert coco_to_canonical(*canonical_to_coco(BOX)) == BOX.as_tuple()


def test_fit_box_orders_clips_and_refuses():
    fitted = fit_box(400, 300, -20, 50, 854, 480)
    assert fitted.box == Box(0.0, 50.0, 400.0, 300.0) and fitted.swapped and fitted.clipped
    with pytest.raises(BoxError, match="finite"):
        fit_box(math.nan, 0, 10, 10, 854, 480)
    with pytest.raises(BoxError, match="no area"):
        fit_box(900, 10, 950, 20, 854, 480)


def test_iou():
    assert iou(BOX, BOX) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou(Box(0, 0, 1, 1), Box(2, 2, 3, 3)) == 0.0
