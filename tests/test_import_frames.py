"""Importing still frames from folders and file lists into cases, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation.importers import CaseMeta, import_frames
from db.frames import FrameStore
from db.schema import AuditEvent, Case, CaseTag, Frame


def frame_bytes(seed: int, fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def cases(session: Session, dataset: str) -> list[Case]:
    return list(session.scalars(select(Case).where(Case.dataset == dataset).order_by(Case.key)))


def row_counts(session: Session) -> dict[str, int]:
    return {table.__name__: session.scalar(select(func.count()).select_from(table))
            for table in (Case, Frame, CaseTag)}


@pytest.fixture
def dataset_folder(tmp_path: Path) -> Path:
    """``ds/video01/frame_000125.png``, ``frame_000126.png`` and ``ds/video02/frame_000003.jpg``."""
    root = tmp_path / "ds"
    write(root / "video01" / "frame_000125.png", frame_bytes(1))
    write(root / "video01" / "frame_000126.png", frame_bytes(2))
    write(root / "video02" / "frame_000003.jpg", frame_bytes(3, "JPEG"))
    write(root / "video02" / "notes.txt", b"not a frame, not an image suffix")
    return root


def test_folder_layout_gives_video_frame_index_and_key(session: Session, store: FrameStore,
                                                       dataset_folder: Path) -> None:
    meta = CaseMeta("ds", split="train", tags=("cvs", "hard"))
    summary = import_frames(session, store, [dataset_folder], meta)
    assert summary.counts == {"imported": 3, "duplicates": 0, "rejected": 0, "warnings": 0}
    assert summary.imported == [
        "video01/frame_000125.png", "video01/frame_000126.png", "video02/frame_000003.jpg"]
    imported = cases(session, "ds")
    assert [c.key for c in imported] == ["ds/video01/000125", "ds/video01/000126", "ds/video02/000003"]
    first = imported[0]
    assert (first.video, first.frame_index, first.split, first.source_name) == (
        "video01", 125, "train", "video01/frame_000125.png")
    assert first.procedure == "laparoscopic_cholecystectomy"
    assert [t.tag for t in first.tags] == ["cvs", "hard"]
    assert store.read(first.frame) == (dataset_folder / "video01" / "frame_000125.png").read_bytes()
    assert imported[2].frame.format == "JPEG"


def test_import_is_audited_with_its_counts(session: Session, store: FrameStore, dataset_folder: Path) -> None:
    import_frames(session, store, [dataset_folder], CaseMeta("audited_ds"), actor="cli:tester")
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import.frames")
                           .order_by(AuditEvent.id.desc()))
    assert event.actor_label == "cli:tester"
    assert event.payload["dataset"] == "audited_ds"
    assert (event.payload["imported"], event.payload["rejected"]) == (3, 0)


def test_explicit_files_take_the_video_from_meta(session: Session, store: FrameStore,
                                                 dataset_folder: Path) -> None:
    files = [dataset_folder / "video01" / "frame_000126.png", dataset_folder / "video02" / "frame_000003.jpg"]
    summary = import_frames(session, store, files, CaseMeta("ds", video="video07", split="val"))
    assert summary.imported == ["frame_000126.png", "frame_000003.jpg"]
    assert [(c.key, c.video, c.frame_index, c.split) for c in cases(session, "ds")] == [
        ("ds/video07/000003", "video07", 3, "val"), ("ds/video07/000126", "video07", 126, "val")]


def test_explicit_file_without_a_video_is_keyed_by_its_name(session: Session, store: FrameStore,
                                                            dataset_folder: Path) -> None:
    # Given one file, its folder is not taken as the video: the key falls back to the file name.
    import_frames(session, store, [dataset_folder / "video01" / "frame_000125.png"], CaseMeta("ds"))
    [case] = cases(session, "ds")
    assert (case.key, case.video, case.frame_index) == ("ds/frame_000125", None, 125)


def test_missing_explicit_file_is_rejected(session: Session, store: FrameStore, tmp_path: Path) -> None:
    summary = import_frames(session, store, [tmp_path / "nowhere.png"], CaseMeta("ds"))
    assert summary.imported == []
    assert len(summary.rejected) == 1 and "no such file" in summary.rejected[0][1]


def test_rerun_changes_nothing(session: Session, store: FrameStore, dataset_folder: Path) -> None:
    meta = CaseMeta("ds", split="test", tags=("phase",))
    first = import_frames(session, store, [dataset_folder], meta)
    counts, files = row_counts(session), files_under(store.root)
    keys = [(c.id, c.key, c.frame_id) for c in cases(session, "ds")]
    second = import_frames(session, store, [dataset_folder], meta)
    assert second.imported == []
    assert second.duplicates == first.imported
    assert row_counts(session) == counts
    assert files_under(store.root) == files
    assert [(c.id, c.key, c.frame_id) for c in cases(session, "ds")] == keys


def test_same_image_under_two_names_is_one_case(session: Session, store: FrameStore, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write(root / "video01" / "frame_000010.png", frame_bytes(5))
    write(root / "video01" / "frame_000011.png", frame_bytes(5))
    summary = import_frames(session, store, [root], CaseMeta("ds"))
    assert summary.imported == ["video01/frame_000010.png"]
    assert summary.duplicates == ["video01/frame_000011.png"]
    assert [c.key for c in cases(session, "ds")] == ["ds/video01/000010"]
    assert row_counts(session)["Frame"] == 1


def test_same_image_in_another_dataset_shares_the_frame(session: Session, store: FrameStore,
                                                        dataset_folder: Path) -> None:
    import_frames(session, store, [dataset_folder], CaseMeta("ds_a"))
    summary = import_frames(session, store, [dataset_folder], CaseMeta("ds_b"))
    assert len(summary.imported) == 3
    assert {c.frame_id for c in cases(session, "ds_a")} == {c.frame_id for c in cases(session, "ds_b")}
    assert row_counts(session)["Frame"] == 3


def test_bad_files_are_rejected_with_reasons_while_good_ones_import(session: Session, store: FrameStore,
                                                                    tmp_path: Path) -> None:
    root = tmp_path / "ds"
    good = frame_bytes(8)
    write(root / "video01" / "frame_000001.png", b"")
    write(root / "video01" / "frame_000002.png", good[: len(good) // 2])
    write(root / "video01" / "frame_000003.png", b"phase,frame\nPreparation,3\n")
    write(root / "video01" / "frame_000004.png", good)
    write(root / "video01" / "frame_000005.jpg", frame_bytes(9, "JPEG"))
    summary = import_frames(session, store, [root], CaseMeta("ds"))
    assert summary.imported == ["video01/frame_000004.png", "video01/frame_000005.jpg"]
    reasons = dict(summary.rejected)
    assert list(reasons) == [
        "video01/frame_000001.png", "video01/frame_000002.png", "video01/frame_000003.png"]
    assert "empty" in reasons["video01/frame_000001.png"]
    assert "truncated" in reasons["video01/frame_000002.png"]
    assert "not an image" in reasons["video01/frame_000003.png"]
    assert "rejected video01/frame_000002.png" in summary.render()
    assert [c.frame_index for c in cases(session, "ds")] == [4, 5]
    assert len(files_under(store.root)) == 2  # two originals; thumbnails come on first request


def test_invalid_split_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="split must be one of train, val, test"):
        CaseMeta("ds", split="training")


def test_dataset_name_with_a_slash_is_refused() -> None:
    with pytest.raises(ValueError, match="dataset"):
        CaseMeta("ds/video01")
