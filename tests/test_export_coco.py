"""COCO export of current Go Zone labels on real SQLite and PostgreSQL: categories, pixel boxes, images beside
the file, selection, safe names, determinism and the export record."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from annotation.exporters import export_coco
from db.cases import CaseFilter
from db.errors import Conflict
from db.schema import AuditEvent, Export
from models.boxes import coco_to_canonical
from tests.conftest import make_image_bytes
from tests.test_export_labelme import TEXTS, add_labelled_case, tree


def read(folder) -> dict:
    return json.loads((folder / "annotations.json").read_text("utf-8"))


def test_phases_are_categories_and_boxes_are_pixel_xywh(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/v1/000002", seed=2, phase="D", box=(0.5, 1.25, 64.0, 48.0))
    add_labelled_case(session, store, "resgo/v1/000001", seed=1, phase="B", box=(10.0, 5.0, 40.0, 30.0),
                      source="labelme:x.json")
    summary = export_coco(session, store, tmp_path / "coco")
    assert summary.exported == ["resgo/v1/000001", "resgo/v1/000002"]
    doc = read(tmp_path / "coco")
    assert [(c["id"], c["name"], c["phase_name"]) for c in doc["categories"]] == [
        (1, "A", "Preparation of the Go Zone"), (2, "B", "Dissection of Calot's Triangle"),
        (3, "C", "Clip and Divide"), (4, "D", "Gallbladder Dissection")]
    assert [(i["id"], i["file_name"], i["width"], i["height"], i["case_key"]) for i in doc["images"]] == [
        (1, "images/resgo/v1/000001.png", 64, 48, "resgo/v1/000001"),
        (2, "images/resgo/v1/000002.png", 64, 48, "resgo/v1/000002")]
    first, second = doc["annotations"]
    assert (first["image_id"], first["category_id"], first["bbox"], first["area"], first["iscrowd"]) == (
        1, 2, [10.0, 5.0, 30.0, 25.0], 750.0, 0)
    assert first["segmentation"] == [[10.0, 5.0, 40.0, 5.0, 40.0, 30.0, 10.0, 30.0]]
    assert first["attributes"] == {"phase": "B", **TEXTS, "source": "labelme:x.json"}
    assert second["category_id"] == 4 and coco_to_canonical(*second["bbox"]) == (0.5, 1.25, 64.0, 48.0)
    assert second["area"] == pytest.approx(63.5 * 46.75)
    assert [a["id"] for a in doc["annotations"]] == [1, 2]
    for image, seed in zip(doc["images"], (1, 2), strict=True):
        assert (tmp_path / "coco" / image["file_name"]).read_bytes() == make_image_bytes(seed=seed)
    assert sorted(tree(tmp_path / "coco")) == ["annotations.json", "images/resgo/v1/000001.png",
                                               "images/resgo/v1/000002.png"]


def test_labels_without_phase_need_the_single_category(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/v/000001", seed=1, phase=None)
    add_labelled_case(session, store, "resgo/v/000002", seed=2, phase="A")
    by_phase = export_coco(session, store, tmp_path / "phase")
    assert by_phase.exported == ["resgo/v/000002"]
    assert "categories='go_zone'" in dict(by_phase.skipped)["resgo/v/000001"]
    assert [i["case_key"] for i in read(tmp_path / "phase")["images"]] == ["resgo/v/000002"]
    single = export_coco(session, store, tmp_path / "single", categories="go_zone")
    doc = read(tmp_path / "single")
    assert single.exported == ["resgo/v/000001", "resgo/v/000002"] and single.skipped == []
    assert doc["categories"] == [{"id": 1, "name": "go_zone", "supercategory": "go_zone"}]
    assert [(a["category_id"], a["attributes"]["phase"]) for a in doc["annotations"]] == [(1, None), (1, "A")]
    with pytest.raises(ValueError, match="categories"):
        export_coco(session, store, tmp_path / "bad", categories="triplet")


def test_filters_and_approved_only(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/v/000001", seed=1, source="annotation:9")
    add_labelled_case(session, store, "resgo/v/000002", seed=2, source="labelme:b.json")
    add_labelled_case(session, store, "endo/v/000001", seed=3, source="annotation:10")
    summary = export_coco(session, store, tmp_path / "out", CaseFilter(dataset="resgo"), approved_only=True)
    assert summary.exported == ["resgo/v/000001"]
    assert "not from an approved annotation" in dict(summary.skipped)["resgo/v/000002"]
    doc = read(tmp_path / "out")
    assert [i["case_key"] for i in doc["images"]] == ["resgo/v/000001"]
    assert doc["info"]["filters"]["dataset"] == "resgo" and doc["info"]["filters"]["approved_only"] is True


def test_hostile_keys_stay_under_images(session, store, tmp_path):
    keys = ["../../../escape", "/abs/path", "x/A", "x/a"]
    for n, key in enumerate(keys, 1):
        add_labelled_case(session, store, key, seed=n)
    export_coco(session, store, tmp_path / "out")
    names = [i["file_name"] for i in read(tmp_path / "out")["images"]]
    assert names == ["images/_../_../_../escape.png", "images/abs/path.png", "images/x/A.png",
                     "images/x/a~2.png"]
    for name in names:
        assert (tmp_path / "out" / name).resolve().is_relative_to((tmp_path / "out" / "images").resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]


def test_deterministic_atomic_and_recorded(session, store, tmp_path):
    for n, key in enumerate(["resgo/b/000001", "resgo/a/000001"], 1):
        add_labelled_case(session, store, key, seed=n)
    one = export_coco(session, store, tmp_path / "one", actor="cli:me")
    two = export_coco(session, store, tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two") and one.sha256 == two.sha256
    with pytest.raises(Conflict):
        export_coco(session, store, tmp_path / "one")
    exports = session.scalars(select(Export).order_by(Export.id)).all()
    assert [(e.format, e.counts["exported"], e.filters["categories"]) for e in exports] == [
        ("coco", 2, "phase"), ("coco", 2, "phase")]
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "export.coco")
                           .order_by(AuditEvent.id))
    assert event.actor_label == "cli:me" and event.payload["sha256"] == one.sha256


def test_an_empty_selection_writes_an_empty_valid_file(session, store, tmp_path):
    summary = export_coco(session, store, tmp_path / "out", CaseFilter(dataset="nothing"))
    doc = read(tmp_path / "out")
    assert summary.exported == [] and doc["images"] == [] and doc["annotations"] == []
    assert [c["name"] for c in doc["categories"]] == ["A", "B", "C", "D"]


def test_other_procedures_add_their_phases_after_resgo(session, store, tmp_path):
    add_labelled_case(session, store, "mb/v/000001", seed=1, phase="omentum_division",
                      procedure="laparoscopic_gastric_bypass")
    add_labelled_case(session, store, "resgo/v/000001", seed=2, phase="C")
    export_coco(session, store, tmp_path / "out")
    doc = read(tmp_path / "out")
    names = [(c["id"], c["name"], c["vocabulary"]) for c in doc["categories"]]
    assert names[:4] == [(1, "A", "resgo"), (2, "B", "resgo"), (3, "C", "resgo"), (4, "D", "resgo")]
    assert names[4:6] == [(5, "preparation", "multibypass140"),
                          (6, "gastric_pouch_creation", "multibypass140")]
    assert [a["category_id"] for a in doc["annotations"]] == [7, 3]
