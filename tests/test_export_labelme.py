"""LabelMe export of current Go Zone labels on real SQLite and PostgreSQL: the exact inverse of the importer
(unknown keys and flags back byte for byte, export -> import -> export identical), selection, safe names,
atomic output and the export record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from annotation.exporters import common, export_labelme
from annotation.importers.common import CaseMeta
from annotation.importers.labelme import import_labelme
from db.cases import CaseFilter
from db.errors import Conflict
from db.schema import AuditEvent, Case, Export, Label
from tests.conftest import make_image_bytes

META = CaseMeta("resgo")
TEXTS = {"location": "Inside Calot's triangle, left of the duct", "exposure": "Adequate <b>view</b>",
         "next_action": "Dissect the peritoneum", "critical_risk": "Common bile duct"}


def add_labelled_case(session, store, key: str, *, seed: int, phase: str | None = "B",
                      box=(10.0, 5.0, 40.0, 30.0), source: str = "annotation:1", extra=None,
                      procedure: str = "laparoscopic_cholecystectomy", texts=None,
                      current: bool = True) -> Case:
    """A case (64x48 frame) with one label; ``extra`` as the LabelMe importer would have kept it."""
    frame, _ = store.put(session, store.validate(make_image_bytes(seed=seed)))
    case = Case(key=key, frame=frame, dataset=key.split("/")[0] or "x", procedure=procedure)
    session.add(case)
    session.flush()
    session.add(Label(case_id=case.id, source=source, is_current=current, phase=phase, phase_raw=phase,
                      box=box, extra=extra, content_sha256="0" * 64, **(TEXTS if texts is None else texts)))
    session.flush()
    return case


def labelme_file(folder: Path, stem: str, *, seed: int, **top) -> dict:
    """Write an image and a LabelMe file rich in keys we do not model; returns the document."""
    shape = {"label": "Go Zone B", "points": [[40, 30], [10.5, 5]], "group_id": 3,
             "description": "over the triangle", "shape_type": "rectangle",
             "flags": {"occluded": True, "smoke": False}, "mask": None, "score": 0.125,
             "attributes": {"grader": "chief", "ids": [1, 2.5, None, "ü"]}}
    flags = {"Dissection of Calot's Triangle": True, "reviewed": True, "A": False}
    doc = {"version": "5.4.1", "flags": flags,
           "shapes": [shape], "imagePath": f"{Path(stem).name}.png", "imageData": None,
           "imageHeight": 48, "imageWidth": 64, "exposure": "adequate", "lineColor": [0, 255, 0, 128],
           "reviewer": {"name": "Dr. Ø", "agreed": True, "when": "2024-05-01", "score": 1e-07,
                        "big": 12345678901234567890, "empty": {}, "none": None}, **top}
    path = folder / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".png").write_bytes(make_image_bytes(seed=seed))
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return doc


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def canonical(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def test_unknown_keys_and_flags_come_back_byte_for_byte(session, store, tmp_path):
    originals = {stem: labelme_file(tmp_path / "in", stem, seed=n)
                 for n, stem in enumerate(["video01/frame_000125", "video02/frame_000003"], 1)}
    assert len(import_labelme(session, store, [tmp_path / "in"], META).imported) == 2
    summary = export_labelme(session, store, tmp_path / "out")
    assert summary.exported == ["resgo/video01/000125", "resgo/video02/000003"] and summary.skipped == []
    for stem, original in originals.items():
        video, frame = stem.split("/")
        exported = json.loads((tmp_path / "out" / "resgo" / video / f"{frame[-6:]}.json").read_text("utf-8"))
        unknown_top = [k for k in original if k not in {"shapes", "imagePath", "imageData", "imageHeight",
                                                        "imageWidth", "exposure"}]
        assert [k for k in exported if k in unknown_top] == unknown_top  # same keys, same order
        for key in unknown_top:
            assert canonical(exported[key]) == canonical(original[key]), key
        shape, original_shape = exported["shapes"][0], original["shapes"][0]
        for key in original_shape.keys() - {"points"}:
            assert canonical(shape[key]) == canonical(original_shape[key]), key
        assert shape["points"] == [[10.5, 5.0], [40.0, 30.0]]  # any corner order in, canonical order out
        assert (exported["imagePath"], exported["imageData"]) == (f"{frame[-6:]}.png", None)
        assert (exported["imageWidth"], exported["imageHeight"], exported["exposure"]) == (64, 48, "adequate")
        assert "location" not in exported  # the description carries it, as it did in the original
    assert (tmp_path / "out/resgo/video01/000125.png").read_bytes() == make_image_bytes(seed=1)


def test_a_kept_description_is_never_rewritten(session, store, tmp_path):
    labelme_file(tmp_path / "in", "v/frame_000001", seed=1, location="Top-level location")
    original = labelme_file(tmp_path / "in", "v/frame_000002", seed=2)
    original["shapes"][0]["description"] = ""
    (tmp_path / "in/v/frame_000002.json").write_text(json.dumps({**original, "location": "Only at the top"}))
    import_labelme(session, store, [tmp_path / "in"], META)
    export_labelme(session, store, tmp_path / "out")
    first = json.loads((tmp_path / "out/resgo/v/000001.json").read_text("utf-8"))
    second = json.loads((tmp_path / "out/resgo/v/000002.json").read_text("utf-8"))
    assert (first["shapes"][0]["description"], first["location"]) == ("over the triangle", "Top-level location")
    assert (second["shapes"][0]["description"], second["location"]) == ("", "Only at the top")


def test_a_phase_read_from_the_label_leaves_flags_as_they_were(session, store, tmp_path):
    for n, flags in enumerate(({}, {"reviewed": False}, None), 1):
        doc = labelme_file(tmp_path / "in", f"v/frame_00000{n}", seed=n)
        doc["shapes"][0]["label"] = "Go Zone D"
        if flags is None:
            del doc["flags"]
        else:
            doc["flags"] = flags
        (tmp_path / f"in/v/frame_00000{n}.json").write_text(json.dumps(doc))
    import_labelme(session, store, [tmp_path / "in"], META)
    assert session.scalars(select(Label.phase)).all() == ["D", "D", "D"]
    export_labelme(session, store, tmp_path / "out")
    docs = [json.loads((tmp_path / f"out/resgo/v/00000{n}.json").read_text("utf-8")) for n in (1, 2, 3)]
    assert [d.get("flags", "absent") for d in docs] == [{}, {"reviewed": False}, "absent"]
    assert {d["shapes"][0]["label"] for d in docs} == {"Go Zone D"}


def test_export_import_export_is_identical(session, store, tmp_path):
    labelme_file(tmp_path / "in", "video01/frame_000125", seed=1)
    import_labelme(session, store, [tmp_path / "in"], META)
    add_labelled_case(session, store, "resgo/video01/000200", seed=2, phase="C", source="annotation:5")
    add_labelled_case(session, store, "resgo/video01/000300", seed=3, phase=None, source="annotation:6",
                      texts={"location": None, "exposure": "poor", "next_action": None,
                             "critical_risk": None})
    first = export_labelme(session, store, tmp_path / "first")
    assert len(first.exported) == 3, first.render()
    # Importing the dataset folder under the same dataset name gives the cases their keys again.
    again = import_labelme(session, store, [tmp_path / "first" / "resgo"], META)
    assert len(again.imported) == 3 and again.rejected == [], again.render()
    sources = session.scalars(select(Label.source).where(Label.is_current).order_by(Label.source)).all()
    assert sources == ["labelme:video01/000125.json", "labelme:video01/000200.json",
                       "labelme:video01/000300.json"]
    second = export_labelme(session, store, tmp_path / "second")
    assert tree(tmp_path / "second") == tree(tmp_path / "first")
    assert second.sha256 == first.sha256


def test_a_label_without_labelme_origin_gets_phase_flags_and_texts(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/video01/000007", seed=4, phase="C", box=(1.25, 2.0, 63.0, 47.5))
    summary = export_labelme(session, store, tmp_path / "out")
    assert summary.files == {"resgo/video01/000007": "resgo/video01/000007.json"}
    doc = json.loads((tmp_path / "out/resgo/video01/000007.json").read_text("utf-8"))
    assert list(doc)[:7] == ["version", "flags", "shapes", "imagePath", "imageData", "imageHeight",
                             "imageWidth"]
    assert doc["flags"] == {"A": False, "B": False, "C": True, "D": False}
    assert doc["shapes"] == [{"label": "Go Zone", "points": [[1.25, 2.0], [63.0, 47.5]], "group_id": None,
                              "description": TEXTS["location"], "shape_type": "rectangle", "flags": {},
                              "mask": None}]
    assert {k: doc.get(k) for k in ("exposure", "next_action", "critical_risk")} == {
        k: TEXTS[k] for k in ("exposure", "next_action", "critical_risk")}
    assert (doc["imagePath"], doc["imageData"], doc["imageWidth"], doc["imageHeight"]) == (
        "000007.png", None, 64, 48)
    session.execute(Label.__table__.update().values(is_current=False))
    import_labelme(session, store, [tmp_path / "out" / "resgo"], META)
    label = session.scalar(select(Label).where(Label.is_current))
    assert (label.phase, label.box) == ("C", (1.25, 2.0, 63.0, 47.5))
    assert {k: getattr(label, k) for k in TEXTS} == TEXTS


def test_a_changed_phase_rewrites_only_the_phase_flags(session, store, tmp_path):
    extra = {"top": {"version": "5.2.0", "flags": {"B": True, "reviewed": True}, "imagePath": "old.png"},
             "shape": {"label": "Go Zone B", "group_id": None, "flags": {"smoke": True}}}
    add_labelled_case(session, store, "resgo/v/000001", seed=5, phase="D", extra=extra)
    export_labelme(session, store, tmp_path / "out")
    doc = json.loads((tmp_path / "out/resgo/v/000001.json").read_text("utf-8"))
    assert doc["flags"] == {"B": False, "reviewed": True, "D": True}
    assert doc["shapes"][0]["label"] == "Go Zone" and doc["shapes"][0]["flags"] == {"smoke": True}
    assert doc["version"] == "5.2.0" and doc["imagePath"] == "000001.png"
    assert doc["location"] == TEXTS["location"]  # no description to carry it
    session.execute(Label.__table__.update().values(is_current=False))
    import_labelme(session, store, [tmp_path / "out" / "resgo"], META)
    assert session.scalar(select(Label.phase).where(Label.is_current)) == "D"


def test_other_procedures_round_trip_in_their_own_vocabulary(session, store, tmp_path):
    add_labelled_case(session, store, "multibypass140/v1/000010", seed=6, phase="gastric_pouch_creation",
                      procedure="laparoscopic_gastric_bypass")
    export_labelme(session, store, tmp_path / "out")
    doc = json.loads((tmp_path / "out/multibypass140/v1/000010.json").read_text("utf-8"))
    assert doc["flags"]["gastric_pouch_creation"] is True and sum(doc["flags"].values()) == 1
    session.execute(Label.__table__.update().values(is_current=False))
    meta = CaseMeta("multibypass140", "laparoscopic_gastric_bypass")
    import_labelme(session, store, [tmp_path / "out" / "multibypass140"], meta)
    assert session.scalar(select(Label.phase).where(Label.is_current)) == "gastric_pouch_creation"


def test_selection_filters_approval_and_reasons(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/v/000003", seed=1, source="annotation:3")
    add_labelled_case(session, store, "resgo/v/000001", seed=2, source="labelme:a.json")
    add_labelled_case(session, store, "resgo/v/000002", seed=3, box=None)
    add_labelled_case(session, store, "resgo/v/000004", seed=4, phase="Z")
    add_labelled_case(session, store, "resgo/v/000005", seed=5, current=False)
    add_labelled_case(session, store, "other/v/000001", seed=6)
    everything = export_labelme(session, store, tmp_path / "all", CaseFilter(dataset="resgo"))
    assert everything.exported == ["resgo/v/000001", "resgo/v/000003"]
    reasons = dict(everything.skipped)
    assert reasons == {"resgo/v/000002": "the current label has no Go Zone box",
                       "resgo/v/000004": "phase 'Z' is not in the ResGo Go Zone phases vocabulary",
                       "resgo/v/000005": "no current reference label"}
    approved = export_labelme(session, store, tmp_path / "approved", CaseFilter(dataset="resgo"),
                              approved_only=True)
    assert approved.exported == ["resgo/v/000003"]
    assert "not from an approved annotation" in dict(approved.skipped)["resgo/v/000001"]
    assert sorted(tree(tmp_path / "approved")) == ["resgo/v/000003.json", "resgo/v/000003.png"]
    by_key = export_labelme(session, store, tmp_path / "keys", CaseFilter(keys=("other/v/000001",)))
    assert by_key.exported == ["other/v/000001"] and by_key.skipped == []


def test_hostile_keys_stay_inside_the_target_and_stay_unique(session, store, tmp_path):
    keys = ["../../escape", "/etc/passwd", "a/../../b", "C:\\Windows\\win", ".hidden/.x", "",
            "x/Frame 1", "x/frame_1", "x/FRAME?1", "y/a", "y/a.json/b", "CON/aux", "z/" + "é" * 300,
            "q/" * 40]
    for n, key in enumerate(keys, 1):
        add_labelled_case(session, store, key, seed=n)
    target = tmp_path / "deep" / "out"
    summary = export_labelme(session, store, target)
    assert sorted(summary.exported) == sorted(keys) and summary.skipped == []
    files = list(summary.files.values())
    assert len({f.casefold() for f in files}) == len(keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "frames"]  # nothing beside or above it
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]
    for path in target.rglob("*"):
        assert path.resolve().is_relative_to(target.resolve())
        assert len(path.name.encode()) <= 130 and not path.name.startswith(".")
    written = tree(target)
    assert len(written) == 2 * len(keys)
    for key, name in summary.files.items():
        doc = json.loads(written[name])
        assert (target / name).parent.joinpath(doc["imagePath"]).is_file(), key
    assert summary.files["../../escape"] == "_../_../escape.json"
    assert summary.files["/etc/passwd"] == "etc/passwd.json"
    assert summary.files["CON/aux"] == "_CON/_aux.json"


def test_existing_target_is_refused_or_replaced_whole(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/v/000001", seed=1)
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with pytest.raises(Conflict, match="already exists"):
        export_labelme(session, store, target)
    assert tree(target) == {"stale.txt": b"old"}
    export_labelme(session, store, target, overwrite=True)
    assert sorted(tree(target)) == ["resgo/v/000001.json", "resgo/v/000001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]  # no staging or retired folder


def test_a_failure_midway_leaves_no_target_and_no_temporary_files(session, store, tmp_path, monkeypatch):
    for n in range(1, 4):
        add_labelled_case(session, store, f"resgo/v/00000{n}", seed=n)
    calls = []

    def failing_copy(source, destination, folders):
        calls.append(destination)
        if len(calls) == 2:
            raise OSError("disk full")
        real_copy(source, destination, folders)

    real_copy = common.copy_frame
    monkeypatch.setattr("annotation.exporters.labelme.copy_frame", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        export_labelme(session, store, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "frames"]
    assert session.scalar(select(Export)) is None


def test_clipped_box_missing_frame_and_export_record(session, store, tmp_path):
    add_labelled_case(session, store, "resgo/v/000001", seed=1, box=(10.0, 5.0, 100.0, 30.0))
    gone = add_labelled_case(session, store, "resgo/v/000002", seed=2)
    store.path(gone.frame).unlink()
    summary = export_labelme(session, store, tmp_path / "out", actor="cli:tester")
    assert summary.exported == ["resgo/v/000001"]
    assert "missing from the frame store" in dict(summary.skipped)["resgo/v/000002"]
    [(key, message)] = summary.warnings
    assert key == "resgo/v/000001" and "exported clipped" in message
    doc = json.loads((tmp_path / "out/resgo/v/000001.json").read_text("utf-8"))
    assert doc["shapes"][0]["points"] == [[10.0, 5.0], [64.0, 30.0]]
    assert not (tmp_path / "out/resgo/v/000002.png").exists()
    export = session.scalar(select(Export))
    assert (export.format, export.sha256, export.counts) == ("labelme", summary.sha256,
                                                             {"exported": 1, "skipped": 1, "warnings": 1})
    assert export.filters["approved_only"] is False and export.filters["tags"] == []
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "export.labelme"))
    assert event.actor_label == "cli:tester" and event.entity_id == str(export.id)
    assert event.payload["exported"] == 1 and event.payload["path"] == str(tmp_path / "out")


def test_same_labels_give_the_same_files(session, store, tmp_path):
    for n, key in enumerate(["resgo/b/000002", "resgo/a/000009", "resgo/a/000001"], 1):
        add_labelled_case(session, store, key, seed=n, phase="ABC"[n - 1])
    one = export_labelme(session, store, tmp_path / "one")
    two = export_labelme(session, store, tmp_path / "two")
    assert one.exported == ["resgo/a/000001", "resgo/a/000009", "resgo/b/000002"]
    assert tree(tmp_path / "one") == tree(tmp_path / "two") and one.sha256 == two.sha256
