"""Cholec80 and CholecT50 loaders on tiny fixtures in the published layouts, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation.importers.datasets import DatasetOptions, import_dataset
from db.frames import FrameStore
from db.schema import AuditEvent, Case, Label
from tests.conftest import make_image_bytes
from tests.test_import_video import available_encoder

PHASES_01 = ["Preparation"] * 40 + ["CalotTriangleDissection"] * 35  # 3 s at 25 fps
TOOLS_HEADER = "Frame\tGrasper\tBipolar\tHook\tScissors\tClipper\tIrrigator\tSpecimenBag"


def encode_video(path: Path, *, rate: int, frames: int, width: int = 64, height: int = 48) -> Path:
    """A tiny video in which every frame differs (so sampled frames never hash alike). AVI gets MPEG-4 Part 2:
    AVI cannot carry H.264's reordered frame times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "mpeg4" if path.suffix == ".avi" else available_encoder()
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[..., 0], pixels[..., 1] = index * 2 % 256, index * 7 % 256
            pixels[index % height, :, 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def phase_file(phases: list[str]) -> str:
    return "Frame\tPhase\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(phases))


@pytest.fixture(scope="module")
def cholec80_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_video(tmp_path_factory.mktemp("c80") / "video01.mp4", rate=25, frames=75)


def cholec80_root(tmp_path: Path, video: Path) -> Path:
    root = tmp_path / "cholec80"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "video01.mp4").write_bytes(video.read_bytes())
    write(root / "phase_annotations" / "video01-phase.txt", phase_file(PHASES_01))
    write(root / "tool_annotations" / "video01-tool.txt",
          f"{TOOLS_HEADER}\n0\t1\t0\t0\t0\t0\t0\t0\n25\t1\t0\t1\t0\t0\t0\t0\n50\t0\t0\t0\t0\t1\t0\t0\n")
    return root


def cases_of(session: Session, dataset: str) -> list[Case]:
    return list(session.scalars(select(Case).where(Case.dataset == dataset).order_by(Case.key)))


def label_of(session: Session, case: Case) -> Label:
    return session.scalar(select(Label).where(Label.case_id == case.id))


def test_cholec80_samples_the_video_at_one_fps_with_phases_and_tools(session: Session, store: FrameStore,
                                                                      tmp_path: Path, cholec80_video: Path) -> None:
    root = cholec80_root(tmp_path, cholec80_video)
    summary = import_dataset(session, store, "cholec80", root, actor="tester")
    assert summary.counts == {"imported": 3, "duplicates": 0, "rejected": 0, "warnings": 0}, summary.render()
    cases = cases_of(session, "cholec80")
    assert [c.key for c in cases] == ["cholec80/video01/000000", "cholec80/video01/000025", "cholec80/video01/000050"]
    assert [c.timestamp_s for c in cases] == pytest.approx([0.0, 1.0, 2.0], abs=1e-3)
    assert {(c.split, c.procedure, c.video) for c in cases} == {("train", "laparoscopic_cholecystectomy", "video01")}
    labels = [label_of(session, c) for c in cases]
    assert [lb.phase for lb in labels] == ["Preparation", "Preparation", "CalotTriangleDissection"]
    assert [lb.extra["tools"] for lb in labels] == [["Grasper"], ["Grasper", "Hook"], ["Clipper"]]
    assert {lb.source for lb in labels} == {"cholec80:phase_annotations/video01-phase.txt"}
    assert all(lb.is_current for lb in labels)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import.dataset"))
    assert event.actor_label == "tester" and event.payload["dataset"] == "cholec80" and event.payload["imported"] == 3

    again = import_dataset(session, store, "cholec80", root)
    assert again.counts == {"imported": 0, "duplicates": 3, "rejected": 0, "warnings": 0}
    assert len(cases_of(session, "cholec80")) == 3
    assert len(session.scalars(select(Label)).all()) == 3


def test_cholec80_rate_and_a_changed_label_on_reimport(session: Session, store: FrameStore, tmp_path: Path,
                                                       cholec80_video: Path) -> None:
    root = cholec80_root(tmp_path, cholec80_video)
    summary = import_dataset(session, store, "cholec80", root, DatasetOptions(fps=0.5))
    assert [c.frame_index for c in cases_of(session, "cholec80")] == [0, 50], summary.render()
    write(root / "phase_annotations" / "video01-phase.txt", phase_file(["ClippingCutting"] * 75))
    again = import_dataset(session, store, "cholec80", root, DatasetOptions(fps=0.5))
    assert len(again.imported) == 2 and not again.duplicates
    assert all("updated" in message for _, message in again.warnings)
    assert {label_of(session, c).phase for c in cases_of(session, "cholec80")} == {"ClippingCutting"}


def test_cholec80_frame_folders_and_official_split(session: Session, store: FrameStore, tmp_path: Path) -> None:
    root = tmp_path / "cholec80"
    for second in range(4):  # numbered by second, as many extraction scripts do
        path = root / "frames" / "video41" / f"{second:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_image_bytes(seed=second + 1))
    write(root / "phase_annotations" / "video41-phase.txt", phase_file(["GallbladderPackaging"] * 100))
    summary = import_dataset(session, store, "cholec80", root, DatasetOptions(frame_index_scale=25))
    cases = cases_of(session, "cholec80")
    assert [c.frame_index for c in cases] == [0, 25, 50, 75], summary.render()
    assert {c.split for c in cases} == {"test"}
    assert {c.frame.format for c in cases} == {"PNG"}
    assert [c.timestamp_s for c in cases] == [0.0, 1.0, 2.0, 3.0]
    # Only the train split asked for: video41 is a test video.
    assert import_dataset(session, store, "cholec80", root, DatasetOptions(splits=("train",))).counts["imported"] == 0


def test_cholec80_damaged_files_are_reported_per_file(session: Session, store: FrameStore, tmp_path: Path,
                                                      cholec80_video: Path) -> None:
    root = cholec80_root(tmp_path, cholec80_video)
    write(root / "tool_annotations" / "video01-tool.txt", f"{TOOLS_HEADER}\n0\t1\t0\t2\t0\t0\t0\t0\n")
    write(root / "phase_annotations" / "video02-phase.txt", phase_file(["Preparation", "Preparation", "Dancing"]))
    write(root / "phase_annotations" / "video03-phase.txt", phase_file(["Preparation"] * 5))  # no video
    write(root / "phase_annotations" / "video04-phase.txt", "Frame\tPhase\n0\tPreparation\nzero\tPreparation\n")
    truncated = root / "videos" / "video05.mp4"
    truncated.write_bytes(cholec80_video.read_bytes()[:600])
    write(root / "phase_annotations" / "video05-phase.txt", phase_file(["Preparation"] * 75))

    summary = import_dataset(session, store, "cholec80", root)
    rejected = dict(summary.rejected)
    assert "line 4: unknown phase 'Dancing'" in rejected["phase_annotations/video02-phase.txt"]
    assert "no video videos/video03.mp4" in rejected["phase_annotations/video03-phase.txt"]
    assert "line 3: expected 'frame<TAB>phase'" in rejected["phase_annotations/video04-phase.txt"]
    assert "line 2" in rejected["tool_annotations/video01-tool.txt"]
    assert "videos/video05.mp4" in rejected and "decode" in rejected["videos/video05.mp4"]
    # The rest still imports: video01's phases (without tools).
    cases = [c for c in cases_of(session, "cholec80") if c.video == "video01"]
    assert len(cases) == 3 and all(label_of(session, c).extra is None for c in cases)


# --- CholecT50 ---------------------------------------------------------------------------------------------

CATEGORIES = {
    "instrument": {"0": "grasper", "1": "bipolar", "2": "hook", "3": "scissors", "4": "clipper", "5": "irrigator"},
    "verb": {str(i): v for i, v in enumerate(["grasp", "retract", "dissect", "coagulate", "clip", "cut",
                                               "aspirate", "irrigate", "pack", "null_verb"])},
    "target": {"0": "gallbladder", "1": "cystic_plate", "2": "cystic_duct", "14": "null_target"},
    "triplet": {"1": "grasper,dissect,gallbladder", "17": "grasper,retract,gallbladder",
                "60": "hook,dissect,gallbladder"},
    "phase": {"0": "preparation", "1": "carlot-triangle-dissection", "6": "gallbladder-extraction"},
}


def vector(triplet: int, instrument: int, box: list[float], verb: int, target: int, phase: int) -> list[float]:
    return [triplet, instrument, 1.0 if box[0] != -1 else -1.0, *box, verb, target, -1, -1, -1, -1, -1, phase]


def cholect50_root(tmp_path: Path) -> Path:
    root = tmp_path / "CholecT50"
    for frame in range(3):
        path = root / "videos" / "VID01" / f"{frame:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_image_bytes(100, 50, seed=frame + 1))
    annotations = {
        "0": [vector(17, 0, [0.1, 0.2, 0.5, 0.4], 1, 0, 0), vector(60, 2, [-1, -1, -1, -1], 2, 0, 0)],
        "1": [vector(1, 0, [0.8, 0.8, 0.5, 0.5], 2, 0, 1)],   # reaches outside: clipped
        "2": [vector(-1, -1, [-1, -1, -1, -1], -1, -1, 6)],   # no action in this frame
    }
    doc = {"video": 1, "fps": 1, "num_frames": 3, "categories": CATEGORIES, "annotations": annotations}
    write(root / "labels" / "VID01.json", json.dumps(doc))
    return root


def test_cholect50_triplets_boxes_phases_and_split(session: Session, store: FrameStore, tmp_path: Path) -> None:
    summary = import_dataset(session, store, "cholect50", cholect50_root(tmp_path))
    assert summary.counts["imported"] == 3 and not summary.rejected, summary.render()
    cases = cases_of(session, "cholect50")
    assert [c.key for c in cases] == [f"cholect50/VID01/{i:06d}" for i in range(3)]
    assert {c.split for c in cases} == {"train"}
    first, second, third = (label_of(session, c) for c in cases)
    assert first.triplets == [["grasper", "retract", "gallbladder"], ["hook", "dissect", "gallbladder"]]
    assert first.boxes == [{"label": "grasper", "box": pytest.approx([10.0, 10.0, 60.0, 30.0])}]
    assert (first.phase, first.phase_raw) == ("Preparation", "preparation")
    assert second.boxes == [{"label": "grasper", "box": pytest.approx([80.0, 40.0, 100.0, 50.0])}]
    assert second.phase == "CalotTriangleDissection"
    assert [m for item, m in summary.warnings if item == "videos/VID01/000001.png"] == \
        ["grasper box [0.8, 0.8, 0.5, 0.5]: clipped to the 100x50 frame"]
    assert third.triplets == [] and third.boxes is None and third.phase == "GallbladderRetraction"
    assert first.source == "cholect50:labels/VID01.json"
    again = import_dataset(session, store, "cholect50", cholect50_root(tmp_path / "again"))
    assert again.counts["duplicates"] == 3 and again.counts["imported"] == 0


def test_cholect50_sampling_and_damaged_label_files(session: Session, store: FrameStore, tmp_path: Path) -> None:
    root = cholect50_root(tmp_path)
    (root / "videos" / "VID06").mkdir(parents=True)
    short = {"categories": CATEGORIES, "annotations": {"0": [[1, 0, 1, 0.1, 0.1, 0.2, 0.2, 2, 0]]}}
    write(root / "labels" / "VID06.json", json.dumps(short))
    bad_names = {"categories": {**CATEGORIES, "instrument": {"0": "laser"}}, "annotations": {}}
    write(root / "labels" / "VID08.json", json.dumps(bad_names))
    write(root / "labels" / "VID10.json", '{"categories": {')
    summary = import_dataset(session, store, "cholect50", root, DatasetOptions(fps=0.5))
    rejected = dict(summary.rejected)
    assert rejected["labels/VID06.json"] == "annotations[0] instance 1: expected 15 values, got 9"
    assert "unknown name 'laser'" in rejected["labels/VID08.json"]
    assert rejected["labels/VID10.json"].startswith("not valid JSON")
    assert [c.frame_index for c in cases_of(session, "cholect50")] == [0, 2]
