"""LabelMe Go Zone import on real SQLite and PostgreSQL: good files, every kind of bad file, re-import."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotation.importers import labelme
from annotation.importers.common import CaseMeta
from annotation.importers.labelme import import_labelme
from db.schema import AuditEvent, Case, Frame, Label
from tests.conftest import make_image_bytes

META = CaseMeta("resgo")


def rectangle(points=((10, 5), (40, 30)), label="gozone", **keys) -> dict:
    return {"label": label, "points": [list(p) for p in points], "group_id": None, "shape_type": "rectangle",
            "flags": {}, **keys}


def write_labelme(folder: Path, stem: str = "video01/frame_000125", *, seed: int = 1, image: bool = True,
                  shapes: list | None = None, **top) -> Path:
    """An image (64x48) and its LabelMe JSON under ``folder``; ``top`` overrides top-level keys."""
    json_path = folder / f"{stem}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if image:
        json_path.with_suffix(".png").write_bytes(make_image_bytes(seed=seed))
    doc = {"version": "5.4.1", "flags": {"B": True}, "shapes": [rectangle()] if shapes is None else shapes,
           "imagePath": f"{Path(stem).name}.png", "imageData": None, "imageHeight": 48, "imageWidth": 64,
           **top}
    json_path.write_text(json.dumps(doc), encoding="utf-8")
    return json_path


def state(session, store) -> dict[str, int]:
    """Row counts and files on disk: what a rejected item must leave unchanged."""
    files = sum(1 for p in store.root.rglob("*") if p.is_file()) if store.root.exists() else 0
    return {"cases": session.scalar(select(func.count()).select_from(Case)),
            "labels": session.scalar(select(func.count()).select_from(Label)),
            "frames": session.scalar(select(func.count()).select_from(Frame)), "files": files}


def only_rejection(summary) -> str:
    assert summary.imported == [] and len(summary.rejected) == 1, summary.render()
    return summary.rejected[0][1]


def test_imports_box_phase_texts_and_keeps_unknown_keys(session, store, tmp_path):
    shape = rectangle(((40, 30), (10, 5)), label="Go Zone B", description="over the triangle", mask=None)
    write_labelme(tmp_path, shapes=[shape], exposure="adequate", next_action="dissect", critical_risk="CBD",
                  reviewer={"name": "chief", "agreed": True}, imageData=base64.b64encode(b"x").decode())
    summary = import_labelme(session, store, [tmp_path], META)
    assert summary.imported == ["video01/frame_000125.json"] and summary.rejected == []
    case = session.scalar(select(Case).where(Case.key == "resgo/video01/000125"))
    label = session.scalar(select(Label).where(Label.case_id == case.id))
    assert (case.video, case.frame_index) == ("video01", 125)
    assert label.box == (10.0, 5.0, 40.0, 30.0) and label.is_current
    assert (label.phase, label.phase_raw) == ("B", "B")
    assert (label.location, label.exposure, label.next_action, label.critical_risk) == (
        "over the triangle", "adequate", "dissect", "CBD")
    assert label.source == "labelme:video01/frame_000125.json"
    assert label.extra["top"] == {"version": "5.4.1", "flags": {"B": True}, "imagePath": "frame_000125.png",
                                  "reviewer": {"name": "chief", "agreed": True}}
    assert label.extra["shape"] == {"label": "Go Zone B", "group_id": None, "flags": {}, "mask": None,
                                    "description": "over the triangle"}
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import.labelme"))
    assert event.payload["imported"] == 1 and event.payload["dataset"] == "resgo"


@pytest.mark.parametrize(("flags", "label", "phase", "raw"), [
    ({"Dissection of Calot's Triangle": True}, "gozone", "B", "Dissection of Calot's Triangle"),
    ({"A": False, "C": True, "reviewed": True}, None, "C", "C"),
    ({}, "B", "B", "B"),
    ({}, "Go Zone D", "D", "Go Zone D"),
    ({"A": False}, "gozone_C", "C", "gozone_C"),
    ({}, "Clip and Divide", "C", "Clip and Divide"),
    (None, "Phase A", "A", "Phase A"),
])
def test_phase_from_flags_or_label(session, store, tmp_path, flags, label, phase, raw):
    write_labelme(tmp_path, shapes=[rectangle(label=label)], flags=flags)
    summary = import_labelme(session, store, [tmp_path], META)
    assert len(summary.imported) == 1, summary.render()
    stored = session.scalar(select(Label))
    assert (stored.phase, stored.phase_raw) == (phase, raw)


def test_no_phase_is_stored_with_a_warning(session, store, tmp_path):
    write_labelme(tmp_path, shapes=[rectangle(label="gozone")], flags={"reviewed": True})
    summary = import_labelme(session, store, [tmp_path], META)
    assert len(summary.imported) == 1 and session.scalar(select(Label.phase)) is None
    assert any("no phase" in message for _, message in summary.warnings)


@pytest.mark.parametrize(("flags", "label", "reason"), [
    ({"A": True, "Clip and Divide": True}, "gozone", "conflicting phases"),
    ({"B": True}, "Go Zone C", "names phase B but the label"),
    ({"B": "yes"}, "gozone", "must be true or false"),
    (["B"], "gozone", "flags must be an object"),
])
def test_conflicting_or_malformed_phases_are_rejected(session, store, tmp_path, flags, label, reason):
    write_labelme(tmp_path, shapes=[rectangle(label=label)], flags=flags)
    assert reason in only_rejection(import_labelme(session, store, [tmp_path], META))


@pytest.mark.parametrize("key", ["shapes", "imageHeight", "imageWidth", "imagePath"])
def test_missing_key_is_rejected(session, store, tmp_path, key):
    path = write_labelme(tmp_path)
    doc = json.loads(path.read_text())
    del doc[key]
    path.write_text(json.dumps(doc))
    before = state(session, store)
    reason = only_rejection(import_labelme(session, store, [tmp_path], META))
    assert "missing key" in reason and key in reason
    assert state(session, store) == before


@pytest.mark.parametrize(("top", "reason"), [
    ({"imageWidth": "64"}, "imageWidth must be a positive whole number"),
    ({"imageHeight": True}, "imageHeight must be a positive whole number"),
    ({"shapes": {"label": "B"}}, "shapes must be a list"),
    ({"imagePath": 7}, "imagePath must be a string"),
    ({"shapes": ["rect"]}, "every shape must be a JSON object"),
    ({"location": 12}, "location must be a string"),
    ({"exposure": "x" * 10_001}, "the limit is 10,000"),
])
def test_wrong_types_are_rejected(session, store, tmp_path, top, reason):
    write_labelme(tmp_path, **top)
    assert reason in only_rejection(import_labelme(session, store, [tmp_path], META))


def test_invalid_json_and_non_objects_are_rejected(session, store, tmp_path):
    (tmp_path / "broken.json").write_text('{"shapes": [', encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    summary = import_labelme(session, store, [tmp_path], META)
    reasons = dict(summary.rejected)
    assert "not valid JSON" in reasons["broken.json"]
    assert "is a list" in reasons["list.json"] and summary.imported == []


def test_oversized_json_is_rejected_before_reading(session, store, tmp_path, monkeypatch):
    write_labelme(tmp_path)
    monkeypatch.setattr(labelme, "MAX_JSON_BYTES", 100)
    assert "the limit is 100" in only_rejection(import_labelme(session, store, [tmp_path], META))


def test_nan_coordinates_are_rejected(session, store, tmp_path):
    path = write_labelme(tmp_path, shapes=[rectangle(((0.5, 1.0), (20.0, 30.0)))])
    path.write_text(path.read_text().replace("0.5", "NaN"))
    assert "NaN" in path.read_text()
    before = state(session, store)
    assert "finite numbers" in only_rejection(import_labelme(session, store, [tmp_path], META))
    assert state(session, store) == before


@pytest.mark.parametrize("points", [[[10, 5]], [[10, 5], [40]], "10,5,40,30", None,
                                    [[10, 5], [40, 30], [1, 1]]])
def test_wrong_point_arity_is_rejected(session, store, tmp_path, points):
    shape = rectangle()
    shape["points"] = points
    write_labelme(tmp_path, shapes=[shape])
    reason = only_rejection(import_labelme(session, store, [tmp_path], META))
    assert "points must be [[x1, y1], [x2, y2]]" in reason


def test_non_number_coordinates_are_rejected(session, store, tmp_path):
    write_labelme(tmp_path, shapes=[rectangle((("10", 5), (40, 30)))])
    assert "finite numbers" in only_rejection(import_labelme(session, store, [tmp_path], META))


def test_box_partly_outside_is_clipped_with_a_warning(session, store, tmp_path):
    write_labelme(tmp_path, shapes=[rectangle(((-12.5, -3), (80, 30)))])
    summary = import_labelme(session, store, [tmp_path], META)
    assert len(summary.imported) == 1
    assert session.scalar(select(Label)).box == (0.0, 0.0, 64.0, 30.0)
    [(item, message)] = summary.warnings
    assert item == "video01/frame_000125.json" and "frame_000125.json" in message and "clipped" in message


@pytest.mark.parametrize("points", [((-50, -40), (-10, -5)), ((70, 10), (90, 30)), ((10, 5), (10, 30))])
def test_box_without_area_in_the_frame_is_rejected(session, store, tmp_path, points):
    write_labelme(tmp_path, shapes=[rectangle(points)])
    before = state(session, store)
    reason = only_rejection(import_labelme(session, store, [tmp_path], META))
    assert "no area inside the 64x48 frame" in reason
    assert state(session, store) == before


def test_polygon_instead_of_rectangle_is_rejected(session, store, tmp_path):
    polygon = {"label": "B", "points": [[1, 1], [20, 1], [20, 20]], "shape_type": "polygon"}
    write_labelme(tmp_path, shapes=[polygon])
    reason = only_rejection(import_labelme(session, store, [tmp_path], META))
    assert reason == "shape 'polygon' is not a rectangle; a Go Zone is a rectangle"


@pytest.mark.parametrize("count", [0, 2])
def test_not_exactly_one_rectangle_is_rejected(session, store, tmp_path, count):
    write_labelme(tmp_path, shapes=[rectangle() for _ in range(count)])
    assert f"found {count} rectangles" in only_rejection(import_labelme(session, store, [tmp_path], META))


@pytest.mark.parametrize(("image_path", "reason"), [
    ("../../etc/passwd", "outside the import folder"),
    ("../secret.png", "outside the import folder"),
    ("..\\secret.png", "outside the import folder"),
    ("/etc/passwd", "is absolute"),
    ("C:\\Windows\\win.ini", "is absolute"),
])
def test_image_path_escaping_the_import_folder_is_rejected(session, store, tmp_path, image_path, reason):
    root = tmp_path / "import"
    (tmp_path / "secret.png").write_bytes(make_image_bytes(seed=9))  # a valid image that must not be read
    write_labelme(root, "frame_000001", imagePath=image_path,
                  imageData=base64.b64encode(make_image_bytes(seed=2)).decode())
    before = state(session, store)
    assert reason in only_rejection(import_labelme(session, store, [root], META))
    assert state(session, store) == before


def test_embedded_image_data_is_used_when_the_file_is_missing(session, store, tmp_path):
    data = base64.b64encode(make_image_bytes(seed=4)).decode()
    write_labelme(tmp_path, "video02/frame_000007", image=False, imageData=data)
    summary = import_labelme(session, store, [tmp_path], META)
    assert len(summary.imported) == 1, summary.render()
    case = session.scalar(select(Case))
    assert case.key == "resgo/video02/000007"
    assert store.path(case.frame).read_bytes() == make_image_bytes(seed=4)
    assert "imageData" not in session.scalar(select(Label)).extra["top"]


def test_missing_image_without_image_data_or_bad_base64_is_rejected(session, store, tmp_path):
    write_labelme(tmp_path, "a_000001", image=False)
    write_labelme(tmp_path, "b_000002", image=False, imageData="not base64 !!")
    write_labelme(tmp_path, "c_000003", image=False, imageData=base64.b64encode(b"not an image").decode())
    reasons = dict(import_labelme(session, store, [tmp_path], META).rejected)
    assert "not found beside the JSON and no imageData" in reasons["a_000001.json"]
    assert "imageData is not valid base64" in reasons["b_000002.json"]
    assert "not an image in an accepted format" in reasons["c_000003.json"]


def test_declared_size_must_match_the_image(session, store, tmp_path):
    write_labelme(tmp_path, imageWidth=100, imageHeight=50)
    reason = only_rejection(import_labelme(session, store, [tmp_path], META))
    assert "100x50" in reason and "64x48" in reason


def test_reimport_is_idempotent(session, store, tmp_path):
    write_labelme(tmp_path, "video01/frame_000001", seed=1)
    write_labelme(tmp_path, "video01/frame_000002", seed=2)
    first = import_labelme(session, store, [tmp_path], META)
    after_first = state(session, store)
    second = import_labelme(session, store, [tmp_path], META)
    assert len(first.imported) == 2 and second.imported == [] and len(second.duplicates) == 2
    assert second.rejected == [] and state(session, store) == after_first
    assert after_first["labels"] == 2 and after_first["cases"] == 2


def test_changed_file_updates_its_label_in_place(session, store, tmp_path):
    write_labelme(tmp_path)
    import_labelme(session, store, [tmp_path], META)
    label_id = session.scalar(select(Label.id))
    write_labelme(tmp_path, shapes=[rectangle(((1, 2), (30, 40)))], flags={"D": True})
    summary = import_labelme(session, store, [tmp_path], META)
    assert len(summary.imported) == 1 and any("updated" in m for _, m in summary.warnings)
    label = session.scalar(select(Label))
    assert (label.id, label.box, label.phase) == (label_id, (1.0, 2.0, 30.0, 40.0), "D")
    assert state(session, store)["labels"] == 1


def test_a_second_source_becomes_the_only_current_label(session, store, tmp_path):
    write_labelme(tmp_path, "video01/a_000003", seed=3)
    second = write_labelme(tmp_path, "video01/b_000003", seed=3, image=False, imagePath="a_000003.png",
                           flags={"C": True})
    import_labelme(session, store, [tmp_path / "video01" / "a_000003.json"], META)
    summary = import_labelme(session, store, [second], META)
    assert len(summary.imported) == 1, summary.render()
    labels = session.scalars(select(Label).order_by(Label.id)).all()
    assert [(lb.source, lb.is_current) for lb in labels] == [("labelme:a_000003.json", False),
                                                             ("labelme:b_000003.json", True)]


def test_bad_files_leave_nothing_and_the_rest_goes_on(session, store, tmp_path):
    write_labelme(tmp_path, "video01/frame_000001", seed=1)
    write_labelme(tmp_path, "video01/frame_000002", seed=2, shapes=[])
    # Rejected only after its frame was stored: the savepoint and the files must both be undone.
    write_labelme(tmp_path, "video01/frame_000003", seed=3, score=float("nan"))
    write_labelme(tmp_path, "video01/frame_000004", seed=4)
    before = state(session, store)
    summary = import_labelme(session, store, [tmp_path], META)
    assert summary.imported == ["video01/frame_000001.json", "video01/frame_000004.json"]
    assert dict(summary.rejected).keys() == {"video01/frame_000002.json", "video01/frame_000003.json"}
    assert "NaN" in dict(summary.rejected)["video01/frame_000003.json"]
    after = state(session, store)
    assert {k: after[k] - before[k] for k in after} == {"cases": 2, "labels": 2, "frames": 2, "files": 2}


def test_case_key_already_holding_another_image_is_rejected(session, store, tmp_path):
    write_labelme(tmp_path / "one", seed=1)
    write_labelme(tmp_path / "two", seed=2)
    import_labelme(session, store, [tmp_path / "one"], META)
    before = state(session, store)
    reason = only_rejection(import_labelme(session, store, [tmp_path / "two"], META))
    assert "already holds a different image" in reason
    assert state(session, store) == before
