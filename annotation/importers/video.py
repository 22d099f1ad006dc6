"""Import frames sampled from a video at a chosen rate, decoded with PyAV (FFmpeg)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
from PIL import Image
from sqlalchemy.orm import Session

from annotation.importers.common import CaseMeta, ImportRejected, ImportSummary, add_case, item_scope
from db import audit
from db.frames import FrameStore


def sample_video(path: Path, fps: float) -> Iterator[tuple[int, float, Image.Image]]:
    """(source frame index, timestamp in seconds, image) for one frame every 1/``fps`` seconds.

    The frame index counts frames of the source video at its own rate, as dataset labels do.
    """
    if fps <= 0:
        raise ValueError(f"sampling rate must be > 0 frames per second, got {fps}")
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ImportRejected(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        time_base = float(stream.time_base) if stream.time_base else 1.0 / rate
        start = stream.start_time or 0
        next_time = 0.0
        for frame in container.decode(stream):
            t = ((frame.pts if frame.pts is not None else 0) - start) * time_base
            if t + 0.5 / rate < next_time:
                continue
            yield round(t * rate), t, frame.to_image()
            next_time += 1.0 / fps
            while next_time <= t:
                next_time += 1.0 / fps


def import_video(session: Session, store: FrameStore, path: Path, meta: CaseMeta, *, fps: float,
                 quality: int = 95, actor: str = "system") -> ImportSummary:
    """Sample ``path`` at ``fps`` and import each sampled frame (JPEG at ``quality``) as a case."""
    path = Path(path)
    summary = ImportSummary("video")
    video = meta.video or path.stem
    try:
        for index, seconds, image in sample_video(path, fps):
            name = f"{path.name}#{index}"
            with item_scope(session, store, summary, name):
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, "JPEG", quality=quality)
                validated = store.validate(buffer.getvalue())
                case_meta = CaseMeta(meta.dataset, meta.procedure, video, index, round(seconds, 3), meta.split,
                                     meta.tags)
                _, created = add_case(session, store, validated, case_meta, fallback_key=name, source_name=name)
                (summary.imported if created else summary.duplicates).append(name)
    except ImportRejected as exc:
        summary.rejected.append((path.name, str(exc)))
    except (av.FFmpegError, OSError) as exc:
        summary.rejected.append((path.name, f"cannot decode the video: {exc}"))
    audit.record(session, "import.video", actor_label=actor,
                 payload={"path": str(path), "fps": fps, "dataset": meta.dataset, **summary.counts})
    return summary
