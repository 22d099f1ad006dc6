"""What every public-dataset loader shares: the label it produces, the frames it offers, the import driver.

A loader reads a dataset's published folder layout and yields one ``VideoJob`` per video: where its frames
come from (a video file decoded with PyAV, or a folder of extracted frames), which of them to sample, and
the reference label of a frame index. ``import_jobs`` turns jobs into cases and labels, each frame in its
own savepoint, so one damaged file or frame is reported and the rest still imports.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation.importers.common import (
    IMAGE_SUFFIXES,
    CaseMeta,
    ImportRejected,
    ImportSummary,
    add_case,
    item_scope,
)
from annotation.importers.video import sample_video
from db.frames import FrameStore, ValidatedImage
from db.schema import SPLITS, Case, Label
from models.boxes import BoxError, fit_box

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
MAX_LABEL_FILE_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class DatasetOptions:
    """How to import: sampling rate (None: the dataset's default), which official splits and videos, tags,
    JPEG quality of decoded video frames, the CVS threshold, and how pre-extracted frame numbers scale."""

    fps: float | None = None
    splits: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    quality: int = 95
    cvs_threshold: float = 0.5
    frame_index_scale: int = 1

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"the sampling rate must be > 0 frames per second, got {self.fps}")
        if not 0.0 < self.cvs_threshold <= 1.0:
            raise ValueError(f"the CVS threshold must be in (0, 1], got {self.cvs_threshold}")
        if set(self.splits) - set(SPLITS):
            raise ValueError(f"a split is one of {', '.join(SPLITS)}, got {', '.join(self.splits)}")
        if self.frame_index_scale < 1:
            raise ValueError(f"the frame index scale must be >= 1, got {self.frame_index_scale}")

    def wants(self, video: str, split: str | None) -> bool:
        """Whether ``video`` of official ``split`` passes the --video and --split filters."""
        return (not self.videos or video in self.videos) and (not self.splits or split in self.splits)


@dataclass(frozen=True)
class DatasetLabel:
    """A frame's reference label as a dataset states it. ``relative_boxes`` are (label, (x, y, w, h)) in
    fractions of the frame, turned into canonical pixel boxes once the frame size is known."""

    source: str
    phase: str | None = None
    phase_raw: str | None = None
    action: str | None = None
    triplets: list[list[str]] | None = None
    cvs: dict[str, Any] | None = None
    boxes: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None
    relative_boxes: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()

    def in_pixels(self, width: int, height: int) -> tuple[DatasetLabel, list[str]]:
        """This label with its relative boxes converted for a ``width`` x ``height`` frame, and warnings."""
        if not self.relative_boxes:
            return self, []
        boxes, warnings = list(self.boxes or []), []
        for name, values in self.relative_boxes:
            box, warning = relative_xywh_to_canonical(values, width, height)
            if warning:
                warnings.append(f"{name} box {list(values)}: {warning}")
            if box is not None:
                boxes.append({"label": name, "box": box})
        return replace(self, boxes=boxes, relative_boxes=()), warnings

    @property
    def content_sha256(self) -> str:
        """sha256 of the canonical JSON of everything stored (not the source, which is the row's key)."""
        content = {"phase": self.phase, "phase_raw": self.phase_raw, "action": self.action,
                   "triplets": self.triplets, "cvs": self.cvs, "boxes": self.boxes, "extra": self.extra}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def relative_xywh_to_canonical(values: tuple[float, float, float, float], width: int,
                               height: int) -> tuple[list[float] | None, str | None]:
    """(x, y, w, h) in fractions of the frame (CholecT50) -> ([x1, y1, x2, y2] in pixels or None, warning)."""
    x, y, w, h = values
    try:
        fitted = fit_box(x * width, y * height, (x + w) * width, (y + h) * height, width, height)
    except (BoxError, TypeError) as exc:
        return None, f"dropped ({exc})"
    warning = f"clipped to the {width}x{height} frame" if fitted.clipped else None
    return list(fitted.box.as_tuple()), warning


@dataclass(frozen=True)
class FrameRef:
    """One sampled frame: its index in the dataset's own frame numbering, its time, a name for the summary,
    and how to read it (validated) from disk or from the decoded video."""

    index: int
    seconds: float
    name: str
    load: Callable[[FrameStore], ValidatedImage]


@dataclass
class VideoJob:
    """One video to import: its frames (lazily read; a decoding error ends the job) and its labels."""

    video: str
    split: str | None
    media: str
    frames: Iterable[FrameRef]
    label_for: Callable[[FrameRef], DatasetLabel | None]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset loader: its name (cases' dataset), procedure, default sampling rate, and its job finder."""

    name: str
    procedure: str
    title: str
    default_fps: float | None
    find_jobs: Callable[[Path, DatasetOptions, ImportSummary], Iterator[VideoJob]]
    has_splits: bool = True


# --- reading files --------------------------------------------------------------------------------------


def read_text(path: Path, root: Path) -> str:
    """The UTF-8 text of an annotation file; ImportRejected (naming the file) when it cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_LABEL_FILE_BYTES:
            raise ImportRejected(f"the file is {size:,} bytes; the limit is {MAX_LABEL_FILE_BYTES:,}")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"{relative(path, root)} is not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from exc
    except OSError as exc:
        raise ImportRejected(f"cannot read {relative(path, root)} ({exc.strerror or exc})") from exc


def read_json(path: Path, root: Path) -> Any:
    """The parsed JSON of ``path``; ImportRejected says where it is broken."""
    text = read_text(path, root)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportRejected(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (ValueError, RecursionError) as exc:
        raise ImportRejected(f"not valid JSON ({exc})") from exc


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def last_number(name: str) -> int | None:
    match = _LAST_NUMBER.search(name)
    return int(match.group(1)) if match else None


# --- sampling -------------------------------------------------------------------------------------------


def on_grid(times: list[float], fps: float | None, period: float) -> list[int]:
    """Positions of ``times`` (sorted seconds of frames ``period`` apart) kept when sampling at ``fps``:
    the first frame at or after each multiple of 1/fps, as annotation.importers.video.sample_video does.
    ``fps`` None keeps every frame."""
    if fps is None:
        return list(range(len(times)))
    kept, next_time = [], times[0] if times else 0.0
    for position, t in enumerate(times):
        if t + 0.5 * period < next_time:
            continue
        kept.append(position)
        next_time += 1.0 / fps
        while next_time <= t:
            next_time += 1.0 / fps
    return kept


def folder_frames(folder: Path, root: Path, *, native_fps: float, fps: float | None,
                  index_of: Callable[[int], int] = lambda number: number) -> list[FrameRef]:
    """Sampled frames of a folder of extracted images: the last number of each file name, mapped by
    ``index_of``, is the frame index at ``native_fps``."""
    images = (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    numbered = sorted((index_of(n), p) for p in images if (n := last_number(p.stem)) is not None)
    times = [index / native_fps for index, _ in numbered]
    period = min((b - a for a, b in itertools.pairwise(times) if b > a), default=1.0 / native_fps)
    return [FrameRef(numbered[i][0], times[i], relative(numbered[i][1], root), file_loader(numbered[i][1]))
            for i in on_grid(times, fps, period)]


def file_loader(path: Path) -> Callable[[FrameStore], ValidatedImage]:
    def load(store: FrameStore) -> ValidatedImage:
        try:
            return store.validate_file(path)
        except OSError as exc:
            raise ImportRejected(f"cannot read the image ({exc.strerror or exc})") from exc
    return load


def video_frames(path: Path, root: Path, *, fps: float, quality: int) -> Iterator[FrameRef]:
    """Frames sampled from a video file at ``fps``, indexed at the video's own rate, encoded as JPEG."""
    name = relative(path, root)
    for index, seconds, image in sample_video(path, fps):
        yield FrameRef(index, seconds, f"{name}#{index}", _jpeg_loader(image, quality))


def _jpeg_loader(image: Image.Image, quality: int) -> Callable[[FrameStore], ValidatedImage]:
    """Encode a decoded frame only when it is imported (frames without a label are never encoded)."""
    def load(store: FrameStore) -> ValidatedImage:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
        return store.validate(buffer.getvalue())
    return load


def step_lookup(labels: dict[int, Any], *, max_gap: int) -> Callable[[int], Any]:
    """index -> the value at the last annotated index at or before it, when fewer than ``max_gap`` frames
    back (labels given at a lower rate hold until the next one); None otherwise."""
    ordered = sorted(labels)

    def lookup(index: int) -> Any:
        position = bisect_right(ordered, index) - 1
        if position < 0 or index - ordered[position] >= max_gap:
            return None
        return labels[ordered[position]]
    return lookup


# --- storing --------------------------------------------------------------------------------------------


def store_dataset_label(session: Session, case: Case, label: DatasetLabel) -> str:
    """Write ``label`` as the label of ``case`` from ``label.source``: "new", "updated" or "same".

    A new label becomes the current reference only when the case has none yet from another source (an
    approved annotation stays the reference); an updated label keeps its current flag."""
    digest = label.content_sha256
    row = session.scalar(select(Label).where(Label.case_id == case.id, Label.source == label.source))
    if row is not None and row.content_sha256 == digest:
        return "same"
    outcome = "updated" if row is not None else "new"
    if row is None:
        other_current = session.scalar(select(Label.id).where(Label.case_id == case.id, Label.is_current))
        row = Label(case_id=case.id, source=label.source, is_current=other_current is None)
        session.add(row)
    row.phase, row.phase_raw, row.action = label.phase, label.phase_raw, label.action
    row.triplets, row.cvs, row.boxes, row.extra = label.triplets, label.cvs, label.boxes, label.extra
    row.content_sha256 = digest
    session.flush()
    return outcome


@dataclass
class _VideoTally:
    unlabelled: int = 0
    same_image: list[str] = field(default_factory=list)


def import_jobs(session: Session, store: FrameStore, spec: DatasetSpec, jobs: Iterable[VideoJob],
                options: DatasetOptions, summary: ImportSummary) -> None:
    """Import every sampled, labelled frame of ``jobs`` as a case with its dataset label into ``summary``."""
    for job in jobs:
        summary.warnings += [(job.media, message) for message in job.warnings]
        tally = _VideoTally()
        try:
            for ref in job.frames:
                with item_scope(session, store, summary, ref.name):
                    _import_frame(session, store, spec, job, ref, options, summary, tally)
        except ImportRejected as exc:
            summary.rejected.append((job.media, str(exc)))
        except (av.FFmpegError, OSError) as exc:
            summary.rejected.append((job.media, (f"cannot decode the video, stopped after the frames above: "
                                                f"{exc}")))
        if tally.unlabelled:
            summary.warnings.append((job.media, (f"{tally.unlabelled} sampled frame(s) have no label in the "
                                                 "annotation file and were not imported")))
        if tally.same_image:
            summary.warnings.append((job.media, (f"{len(tally.same_image)} frame(s) repeat an image already "
                                                 f"imported (e.g. {tally.same_image[0]}); kept once")))


def _import_frame(session: Session, store: FrameStore, spec: DatasetSpec, job: VideoJob, ref: FrameRef,
                  options: DatasetOptions, summary: ImportSummary, tally: _VideoTally) -> None:
    """One sampled frame: skipped without a label, else a case (new or existing) and its dataset label."""
    draft = job.label_for(ref)  # may raise ImportRejected for this frame's annotation only
    if draft is None:
        tally.unlabelled += 1
        return
    image = ref.load(store)
    label, warnings = draft.in_pixels(image.width, image.height)
    meta = CaseMeta(spec.name, spec.procedure, job.video, ref.index, round(ref.seconds, 3), job.split,
                    options.tags)
    case, created = add_case(session, store, image, meta, fallback_key=ref.name, source_name=ref.name)
    if case.key != meta.case_key(ref.name):  # the same picture (a blacked-out frame) elsewhere in the dataset
        tally.same_image.append(ref.name)
        summary.duplicates.append(ref.name)
        return
    outcome = store_dataset_label(session, case, label)
    summary.warnings += [(ref.name, message) for message in warnings]
    if not created and outcome == "same":
        summary.duplicates.append(ref.name)
        return
    summary.imported.append(ref.name)
    if outcome == "updated":
        summary.warnings.append((ref.name, ("updated: the dataset label of this frame changed since its last "
                                           "import")))
