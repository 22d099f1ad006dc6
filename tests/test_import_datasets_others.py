"""Endoscapes, SAR-RARP50 and MultiBypass140 loaders, and the CLI commands, on tiny fixtures in the published
layouts, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from annotation.importers.datasets import DatasetOptions, import_dataset
from app.cli_datasets import register
from db.engine import Database
from db.frames import FrameStore
from db.schema import Case, Label
from tests.conftest import make_image_bytes
from tests.test_import_datasets_cholec import cases_of, encode_video, label_of, write


def image(path: Path, seed: int, width: int = 64, height: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_image_bytes(width, height, fmt="JPEG" if path.suffix == ".jpg" else "PNG", seed=seed))


# --- Endoscapes ------------------------------------------------------------------------------------------

def coco_image(image_id: int, name: str, **tags: object) -> dict[str, object]:
    return {"id": image_id, "file_name": name, "width": 64, "height": 48, **tags}


def endoscapes_root(tmp_path: Path) -> Path:
    root = tmp_path / "endoscapes"
    for seed, name in enumerate(["train/1_125.jpg", "train/1_250.jpg", "train/1_375.jpg", "train/2_500.jpg",
                                 "test/162_5850.jpg"], start=1):
        image(root / name, seed)
    cvs = {"images": [coco_image(1, "1_125.jpg", ds=[2 / 3, 1 / 3, 1.0], is_ds_keyframe=True),
                      coco_image(2, "1_250.jpg", ds=[2 / 3, 1 / 3, 1.0], is_ds_keyframe=False),
                      coco_image(3, "1_375.jpg", ds=[0.0, 0.0, 0.0], is_ds_keyframe=True),
                      coco_image(4, "2_500.jpg", ds=[1.0, 1.0, 1.0], is_ds_keyframe=True)],
           "annotations": [], "categories": [{"id": 1, "name": "cystic_plate"}, {"id": 6, "name": "tool"}]}
    boxes = {"images": [coco_image(10, "1_125.jpg"), coco_image(11, "1_250.jpg")],
             "annotations": [{"id": 1, "image_id": 10, "category_id": 6, "bbox": [4, 5, 20, 10]},
                             {"id": 2, "image_id": 11, "category_id": 1, "bbox": [50, 40, 30, 30]}],
             "categories": [{"id": 1, "name": "cystic_plate"}, {"id": 6, "name": "tool"}]}
    write(root / "train" / "annotation_ds_coco.json", json.dumps(cvs))
    write(root / "train" / "annotation_coco.json", json.dumps(boxes))
    test = {"images": [coco_image(1, "162_5850.jpg", ds=[1.0, 2 / 3, 0.0], is_ds_keyframe=True)]}
    write(root / "test" / "annotation_ds_coco.json", json.dumps(test))
    return root


def test_endoscapes_cvs_fractions_threshold_boxes_and_splits(session: Session, store: FrameStore,
                                                             tmp_path: Path) -> None:
    summary = import_dataset(session, store, "endoscapes", endoscapes_root(tmp_path))
    assert summary.counts == {"imported": 5, "duplicates": 0, "rejected": 0, "warnings": 0}, summary.render()
    cases = {c.key: c for c in cases_of(session, "endoscapes")}
    assert sorted(cases) == ["endoscapes/1/000125", "endoscapes/1/000250", "endoscapes/1/000375",
                             "endoscapes/162/005850", "endoscapes/2/000500"]
    assert cases["endoscapes/1/000125"].split == "train" and cases["endoscapes/162/005850"].split == "test"
    assert cases["endoscapes/1/000125"].timestamp_s == 5.0
    first = label_of(session, cases["endoscapes/1/000125"])
    assert first.cvs == {"C1": True, "C2": False, "C3": True, "threshold": 0.5,
                         "fractions": {"C1": pytest.approx(2 / 3), "C2": pytest.approx(1 / 3), "C3": 1.0}}
    assert first.boxes == [{"label": "tool", "box": [4.0, 5.0, 24.0, 15.0]}]
    assert first.source == "endoscapes:train/annotation_ds_coco.json"
    assert first.extra == {"boxes_source": "train/annotation_coco.json"}
    # Not a CVS keyframe (its ds only repeats the last keyframe): boxes only, clipped to the frame.
    between = label_of(session, cases["endoscapes/1/000250"])
    assert between.cvs is None and between.boxes == [{"label": "cystic_plate", "box": [50.0, 40.0, 64.0, 48.0]}]
    assert between.source == "endoscapes:train/annotation_coco.json"


def test_endoscapes_threshold_filters_and_damaged_entries(session: Session, store: FrameStore,
                                                          tmp_path: Path) -> None:
    root = endoscapes_root(tmp_path)
    strict = DatasetOptions(cvs_threshold=0.7, splits=("test",))
    summary = import_dataset(session, store, "endoscapes", root, strict)
    (case,) = cases_of(session, "endoscapes")
    assert summary.counts["imported"] == 1
    assert label_of(session, case).cvs["C1"] is True and label_of(session, case).cvs["C2"] is False

    doc = json.loads((root / "train" / "annotation_ds_coco.json").read_text())
    doc["images"][2]["ds"] = [2, 0, 0]
    write(root / "train" / "annotation_ds_coco.json", json.dumps(doc))
    write(root / "test" / "annotation_ds_coco.json", '{"images": [')
    summary = import_dataset(session, store, "endoscapes", root, DatasetOptions(videos=("1", "162")))
    rejected = dict(summary.rejected)
    assert "ds must be 3 fractions between 0 and 1, got [2, 0, 0]" in rejected["train/1_375.jpg"]
    assert rejected["test/annotation_ds_coco.json"].startswith("not valid JSON")
    assert sorted(c.key for c in cases_of(session, "endoscapes")) == \
        ["endoscapes/1/000125", "endoscapes/1/000250", "endoscapes/162/005850"]


# --- SAR-RARP50 ------------------------------------------------------------------------------------------

def actions_text(frames: int) -> str:
    return "".join(f"{f},{1 if f < 60 else 2 if f < 120 else 3}\n" for f in range(0, frames, 6))


def test_sar_rarp50_video_and_rgb_frames(session: Session, store: FrameStore, tmp_path: Path) -> None:
    root = tmp_path / "SAR-RARP50"
    encode_video(root / "train1" / "video_01" / "video_left.avi", rate=60, frames=180)
    write(root / "train1" / "video_01" / "action_discrete.txt", actions_text(180))
    for index, frame in enumerate(range(0, 240, 30)):  # frames extracted at 2 Hz, named by source frame
        image(root / "test" / "video_41" / "rgb" / f"{frame:09d}.png", index + 10)
    write(root / "test" / "video_41" / "action_discrete.txt", actions_text(240))
    write(root / "test" / "video_42" / "action_discrete.txt", "0,1\n6;2\n")
    write(root / "test" / "video_43" / "action_discrete.txt", "0,9\n")

    summary = import_dataset(session, store, "sar-rarp50", root)
    rejected = dict(summary.rejected)
    assert rejected == {"test/video_42/action_discrete.txt": "line 2: expected 'frame,action', got '6;2'",
                        "test/video_43/action_discrete.txt": "line 1: unknown action 9 (known: 0-7)"}
    cases = cases_of(session, "sar_rarp50")
    assert [(c.video, c.frame_index, c.split) for c in cases] == [
        ("video_01", 0, "train"), ("video_01", 60, "train"), ("video_01", 120, "train"),
        ("video_41", 0, "test"), ("video_41", 60, "test"), ("video_41", 120, "test"), ("video_41", 180, "test")]
    actions = [label_of(session, c).action for c in cases]
    assert actions[:3] == ["Picking-up the needle", "Positioning the needle tip",
                           "Pushing the needle through the tissue"]
    assert {c.procedure for c in cases} == {"robotic_prostatectomy"}
    assert label_of(session, cases[0]).source == "sar_rarp50:train1/video_01/action_discrete.txt"
    again = import_dataset(session, store, "sar_rarp50", root, DatasetOptions(splits=("train",)))
    assert again.counts == {"imported": 0, "duplicates": 3, "rejected": 0, "warnings": 0}


# --- MultiBypass140 --------------------------------------------------------------------------------------

def segment(start: int, end: int, name: str, label_id: int) -> dict[str, object]:
    return {"start": start, "end": end, "label_name": name, "label_id": label_id}


def test_multibypass140_phases_out_of_body_and_errors(session: Session, store: FrameStore, tmp_path: Path) -> None:
    root = tmp_path / "MultiBypass140"
    phases = [segment(0, 2500, "preparation", 0), segment(1000, 2000, "out_of_body", 12),
              segment(2500, 10000, "gastric_pouch_creation", 1), segment(2600, 2700, "severe_index", 13)]
    write(root / "labels" / "bern" / "labels_by70" / "BBP01.mp4.json", json.dumps({"phases": phases, "steps": []}))
    for number in range(1, 5):
        image(root / "BernBypass70" / "frames" / "BBP01" / f"BBP01_{number:08d}.jpg", number)
    write(root / "labels" / "strasbourg" / "labels_by70" / "SBP01.mp4.json",
          json.dumps({"phases": [segment(0, 100, "dancing", 20)]}))
    write(root / "labels" / "strasbourg" / "labels_by70" / "SBP02.mp4.json",
          json.dumps({"phases": [segment(0, 100, "preparation", 0)]}))

    summary = import_dataset(session, store, "multibypass140", root)
    rejected = dict(summary.rejected)
    assert "phases[0]: unknown phase label_id 20 ('dancing')" in rejected["labels/strasbourg/labels_by70/SBP01.mp4.json"]
    assert "no video SBP02.mp4" in rejected["labels/strasbourg/labels_by70/SBP02.mp4.json"]
    cases = cases_of(session, "multibypass140")
    assert [(c.frame_index, c.timestamp_s, c.split) for c in cases] == [(0, 0.0, None), (50, 2.0, None),
                                                                         (75, 3.0, None)]
    assert [label_of(session, c).phase for c in cases] == ["preparation", "preparation", "gastric_pouch_creation"]
    assert {c.procedure for c in cases} == {"laparoscopic_gastric_bypass"}
    assert ("BernBypass70/frames/BBP01", ("1 sampled frame(s) have no label in the annotation file and were not "
                                         "imported")) in summary.warnings
    with pytest.raises(ValueError, match="no official split"):
        import_dataset(session, store, "multibypass140", root, DatasetOptions(splits=("test",)))


def test_multibypass140_from_the_video(session: Session, store: FrameStore, tmp_path: Path) -> None:
    root = tmp_path / "MultiBypass140"
    encode_video(root / "StrasBypass70" / "videos" / "SBP03.mp4", rate=25, frames=75)
    write(root / "labels" / "strasbourg" / "labels_by70" / "SBP03.mp4.json",
          json.dumps({"phases": [segment(0, 1500, "preparation", 0), segment(1500, 5000, "omentum_division", 2)]}))
    summary = import_dataset(session, store, "multibypass140", root)
    assert not summary.rejected, summary.render()
    cases = cases_of(session, "multibypass140")
    assert [(c.key, label_of(session, c).phase) for c in cases] == [
        ("multibypass140/SBP03/000000", "preparation"), ("multibypass140/SBP03/000025", "preparation"),
        ("multibypass140/SBP03/000050", "omentum_division")]


# --- the command line ------------------------------------------------------------------------------------

def test_cli_imports_a_dataset_and_exits_3_on_rejections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    app = typer.Typer()
    register(app)
    root = endoscapes_root(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["endoscapes", str(root), "--split", "train", "--cvs-threshold", "0.3"])
    assert result.exit_code == 0, result.output
    assert "endoscapes: 4 imported, 0 skipped as duplicate, 0 rejected" in result.output
    database = Database.from_url(f"sqlite:///{tmp_path / 'data' / 'surgreview.db'}")
    with database.session_scope() as session:
        cvs = session.scalar(select(Label.cvs).join(Case).where(Case.key == "endoscapes/1/000125"))
        assert cvs["C2"] is True and cvs["threshold"] == 0.3
    database.dispose()
    write(root / "test" / "annotation_ds_coco.json", "[]")
    result = runner.invoke(app, ["endoscapes", str(root)])
    assert result.exit_code == 3 and "rejected test/annotation_ds_coco.json" in result.output
    assert runner.invoke(app, ["endoscapes", str(root), "--split", "dev"]).exit_code == 2
    assert "sar-rarp50" in runner.invoke(app, ["--help"]).output
