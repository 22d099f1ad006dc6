"""Label Studio sync, the pure part: the labeling config, task data, prediction payloads and reading results
back (no server; tests/test_labelstudio.py pushes and pulls against a real one)."""

from __future__ import annotations

import base64
import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation.labelstudio import payloads
from annotation.labelstudio.payloads import UnusableAnnotation, choice_value, labeling_config, read_result
from annotation.labelstudio.push import prediction_draft
from annotation.workflow import GoZoneDraft
from db.schema import Prediction
from models.vocabularies import load
from tests.conftest import make_image_bytes
from tests.labelstudio_server import labelstudio_server  # noqa: F401 - the session fixture

RESGO = load("resgo")
W, H = 854, 480
MODEL = "demo-surg-r1"


# --- pure: labeling config and payloads --------------------------------------------------------------


def test_labeling_config_has_the_box_the_phases_and_the_four_texts():
    root = ET.fromstring(labeling_config(RESGO))
    (image,) = root.iter("Image")
    assert (image.get("name"), image.get("value")) == ("image", "$image")
    (rectangles,) = root.iter("RectangleLabels")
    assert rectangles.get("toName") == "image"
    assert [(label.get("value"), label.get("maxUsages")) for label in rectangles] == [("Go Zone", "1")]
    (choices,) = root.iter("Choices")
    assert choices.get("name") == "phase" and choices.get("required") == "true"
    assert [c.get("value") for c in choices] == [
        "A - Preparation of the Go Zone",
        "B - Dissection of Calot's Triangle",
        "C - Clip and Divide",
        "D - Gallbladder Dissection",
    ]
    assert [t.get("name") for t in root.iter("TextArea")] == [
        "location",
        "exposure",
        "next_action",
        "critical_risk",
    ]
    assert [h.get("value") for h in root.iter("Header")][1:] == [
        "Location",
        "Exposure",
        "Next action",
        "Critical risk",
    ]


def test_labeling_config_uses_the_procedures_vocabulary_and_escapes_names():
    bypass = load("multibypass140")
    root = ET.fromstring(labeling_config(bypass))
    assert [c.get("value") for c in root.iter("Choice")] == [choice_value(p) for p in bypass.phases]
    assert len(bypass.phases) > 4


def test_task_data_carries_the_exact_image_bytes_and_the_case():
    image = make_image_bytes(32, 24, "JPEG", seed=3)
    data = payloads.task_data("demo/vid/000125", 17, image, "JPEG")
    header, encoded = data["image"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert base64.b64decode(encoded) == image
    assert (data["case_key"], data["case_id"]) == ("demo/vid/000125", 17)


def test_prediction_payload_puts_the_box_in_percent_with_the_original_size():
    draft = GoZoneDraft(
        "B",
        (85.4, 48.0, 427.0, 240.0),
        location="left of the duct",
        exposure=None,
        next_action="clip",
        critical_risk="<script>alert(1)</script>",
    )
    payload = payloads.prediction_payload(MODEL, payloads.draft_result(draft, W, H, RESGO))
    assert payload["model_version"] == MODEL
    box, phase, *texts = payload["result"]
    assert (box["original_width"], box["original_height"], box["type"]) == (W, H, "rectanglelabels")
    assert box["value"]["rectanglelabels"] == ["Go Zone"]
    assert [box["value"][k] for k in ("x", "y", "width", "height")] == pytest.approx([10, 10, 40, 40])
    assert phase["value"] == {"choices": ["B - Dissection of Calot's Triangle"]}
    assert [(t["from_name"], t["value"]["text"]) for t in texts] == [
        ("location", ["left of the duct"]),
        ("next_action", ["clip"]),
        ("critical_risk", ["<script>alert(1)</script>"]),
    ]


def test_a_phase_outside_the_vocabulary_is_not_offered_as_a_choice():
    result = payloads.draft_result(GoZoneDraft("Z", None), W, H, RESGO)
    assert result == []


@settings(max_examples=200, deadline=None)
@given(
    x1=st.floats(0, W - 1),
    y1=st.floats(0, H - 1),
    dx=st.floats(1, W),
    dy=st.floats(1, H),
    phase=st.sampled_from("ABCD"),
    text=st.text(min_size=1, max_size=40).filter(str.strip),
)
def test_a_result_reads_back_as_the_same_draft(x1, y1, dx, dy, phase, text):
    box = (x1, y1, min(x1 + dx, W), min(y1 + dy, H))
    draft = GoZoneDraft(phase, box, location=text.strip(), exposure="e", next_action="n", critical_risk="c")
    read = read_result(payloads.draft_result(draft, W, H, RESGO), W, H, RESGO)
    assert read.draft.box == pytest.approx(box, abs=1e-9)
    assert (read.draft.phase, read.draft.location, read.draft.critical_risk) == (phase, text.strip(), "c")
    assert read.warnings == []


def rect_region(x=10.0, y=10.0, w=20.0, h=20.0, **extra) -> dict:
    """A Label Studio Go Zone rectangle result (percent of the image); ``extra`` keys go into its value."""
    return {
        "from_name": "gozone",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": W,
        "original_height": H,
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": 0,
            "rectanglelabels": ["Go Zone"],
            **extra,
        },
    }


def phase_choice(value: str) -> dict:
    """A Label Studio phase choice result."""
    return {"from_name": "phase", "to_name": "image", "type": "choices", "value": {"choices": [value]}}


@pytest.mark.parametrize(
    "result, reason",
    [
        ([phase_choice("A")], "no Go Zone box"),
        ([rect_region(x=math.nan), phase_choice("A")], "finite numbers"),
        ([rect_region(x="NaN"), phase_choice("A")], "finite numbers"),
        ([rect_region(w=None), phase_choice("A")], "finite numbers"),
        ([rect_region(), rect_region(), phase_choice("A")], "2 Go Zone boxes"),
        ([rect_region(rotation=30), phase_choice("A")], "rotated"),
        ([rect_region(x=120.0), phase_choice("A")], "cannot be used"),
        ([rect_region(w=0.0), phase_choice("A")], "cannot be used"),
        ([rect_region(), phase_choice("E - Closure")], "not in the ResGo Go Zone phases vocabulary"),
    ],
)
def test_unusable_annotations_say_why(result, reason):
    with pytest.raises(UnusableAnnotation, match=reason):
        read_result(result, W, H, RESGO)


def test_a_box_reaching_outside_is_clipped_and_flagged():
    read = read_result([rect_region(x=90.0, y=-5.0, w=20.0, h=50.0), phase_choice("d")], W, H, RESGO)
    assert read.draft.box == pytest.approx((0.9 * W, 0.0, W, 0.45 * H))
    assert read.draft.phase == "D"
    assert any("clipped" in w for w in read.warnings)


def test_negative_size_is_put_in_order_and_flagged():
    read = read_result([rect_region(x=50.0, y=50.0, w=-10.0, h=-20.0), phase_choice("C - Clip and Divide")], W, H, RESGO)
    assert read.draft.box == pytest.approx((0.4 * W, 0.3 * H, 0.5 * W, 0.5 * H))
    assert any("in order" in w for w in read.warnings)


def test_a_missing_phase_and_another_image_size_are_warnings():
    region = rect_region()
    region["original_width"], region["original_height"] = 1920, 1080
    read = read_result([region], W, H, RESGO)
    assert read.draft.phase is None and read.draft.box == pytest.approx((0.1 * W, 0.1 * H, 0.3 * W, 0.3 * H))
    assert any("no phase" in w for w in read.warnings) and any("1920x1080" in w for w in read.warnings)


def test_prediction_draft_reads_box_phase_and_rationale():
    prediction = Prediction(
        phase="B",
        parsed={
            "boxes": [{"box": [1.0, 2.0, 3.0, 4.0]}],
            "rationale": {"location": "L", "critical_risk": "R"},
        },
    )
    assert prediction_draft(prediction) == GoZoneDraft(
        "B", (1.0, 2.0, 3.0, 4.0), location="L", critical_risk="R"
    )
