"""Importing frames sampled from a real (tiny, generated) video, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation.importers import CaseMeta, import_video
from db.frames import FrameStore
from db.schema import Case, Frame

WIDTH, HEIGHT, RATE, SECONDS = 64, 48, 25, 5


def available_encoder() -> str:
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises different errors for an unknown or missing codec
            continue
        return name
    pytest.skip("no H.264 or MPEG-4 encoder in this FFmpeg build")


def write_video(path: Path) -> Path:
    """5 s of 64x48 at 25 fps; every frame differs, so sampled frames never hash alike."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(available_encoder(), rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(RATE * SECONDS):
            pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            pixels[..., 0] = index * 2
            pixels[..., 1] = (index * 7) % 256
            pixels[index % HEIGHT, :, 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def cases(session: Session, dataset: str) -> list[Case]:
    return list(session.scalars(select(Case).where(Case.dataset == dataset).order_by(Case.frame_index)))


def test_one_frame_per_second(session: Session, store: FrameStore, clip: Path) -> None:
    summary = import_video(session, store, clip, CaseMeta("ds", split="val", tags=("video",)), fps=1)
    assert summary.counts == {"imported": 5, "duplicates": 0, "rejected": 0, "warnings": 0}
    imported = cases(session, "ds")
    assert [c.frame_index for c in imported] == [0, 25, 50, 75, 100]
    assert [c.timestamp_s for c in imported] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0], abs=1e-3)
    assert [c.key for c in imported] == [f"ds/clip/{i:06d}" for i in (0, 25, 50, 75, 100)]
    assert {(c.video, c.split) for c in imported} == {("clip", "val")}
    assert [t.tag for t in imported[0].tags] == ["video"]
    assert {(c.frame.width, c.frame.height, c.frame.format) for c in imported} == {(WIDTH, HEIGHT, "JPEG")}
    assert len({c.frame_id for c in imported}) == 5
    assert len(files_under(store.root)) == 5


def test_one_frame_per_five_seconds(session: Session, store: FrameStore, clip: Path) -> None:
    summary = import_video(session, store, clip, CaseMeta("ds"), fps=0.2)
    assert len(summary.imported) == 1
    assert [(c.frame_index, c.timestamp_s) for c in cases(session, "ds")] == [(0, 0.0)]


def test_video_name_can_be_given(session: Session, store: FrameStore, clip: Path) -> None:
    import_video(session, store, clip, CaseMeta("ds", video="video42"), fps=0.2)
    assert [c.key for c in cases(session, "ds")] == ["ds/video42/000000"]


def test_reimport_finds_only_duplicates(session: Session, store: FrameStore, clip: Path) -> None:
    first = import_video(session, store, clip, CaseMeta("ds"), fps=1)
    files = files_under(store.root)
    second = import_video(session, store, clip, CaseMeta("ds"), fps=1)
    assert second.counts == {"imported": 0, "duplicates": 5, "rejected": 0, "warnings": 0}
    assert second.duplicates == first.imported
    assert len(cases(session, "ds")) == 5
    assert files_under(store.root) == files


def test_corrupt_video_is_one_rejection_and_writes_nothing(session: Session, store: FrameStore,
                                                           tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(random.Random(0).randbytes(20_000))
    summary = import_video(session, store, broken, CaseMeta("ds"), fps=1)
    assert summary.imported == [] and summary.duplicates == []
    [(item, reason)] = summary.rejected
    assert item == "broken.mp4"
    assert "cannot decode the video" in reason
    assert files_under(store.root) == []
    assert session.scalar(select(func.count()).select_from(Frame)) == 0
    assert cases(session, "ds") == []


def test_missing_video_is_a_rejection(session: Session, store: FrameStore, tmp_path: Path) -> None:
    summary = import_video(session, store, tmp_path / "absent.mp4", CaseMeta("ds"), fps=1)
    assert [item for item, _ in summary.rejected] == ["absent.mp4"]


@pytest.mark.parametrize("fps", [0, -1])
def test_non_positive_rate_is_refused(session: Session, store: FrameStore, clip: Path, fps: float) -> None:
    with pytest.raises(ValueError, match="sampling rate must be > 0"):
        import_video(session, store, clip, CaseMeta("ds"), fps=fps)
    assert files_under(store.root) == []
    assert cases(session, "ds") == []
