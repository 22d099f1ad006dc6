"""MultiBypass140: 140 laparoscopic Roux-en-Y gastric bypass videos (Bern BBPxx, Strasbourg SBPxx) with
phase segments in milliseconds.

Layout (as published in CAMMA-public/MultiBypass140 plus the downloaded videos)::

    labels/bern/labels_by70/BBP01.mp4.json   {"phases": [{"start": ms, "end": ms, "label_name", "label_id"}],
                                              "steps": [...]}
    BernBypass70/videos/BBP01.mp4            (or .../frames/BBP01/BBP01_00000001.jpg from the repository's
                                              util/extract_frames.py: 1 fps, numbered from 1)

Phase ids 0-11 are the vocabulary's phases; segments with id 12 (out_of_body) mark frames outside the patient,
which are not imported; id 13 (severe_index, adverse events) is not a phase and is ignored. The official
splits are five cross-validation folds kept in pickles, so cases get no split.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation.importers.common import IMAGE_SUFFIXES, ImportRejected, ImportSummary
from annotation.importers.datasets.base import (
    DatasetLabel,
    DatasetOptions,
    DatasetSpec,
    FrameRef,
    VideoJob,
    folder_frames,
    read_json,
    relative,
    video_frames,
)
from models import vocabularies

NAME = "multibypass140"
NATIVE_FPS = 25          # frame indices of cases from extracted frames count 25 fps source frames
FRAMES_FPS = 1           # util/extract_frames.py's default rate; its files are numbered from 1
OUT_OF_BODY, SEVERE_INDEX = 12, 13
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
_LABEL_FILE = re.compile(r"^([A-Za-z]+\d+)(?:\.mp4)?\.json$")


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    label_id: int
    label_name: str


def parse_phases(doc: Any) -> tuple[list[Segment], list[Segment]]:
    """A label JSON -> (phase segments, out-of-body segments); ImportRejected names the bad entry."""
    phases = vocabularies.load(NAME).phases
    if not isinstance(doc, dict) or not isinstance(doc.get("phases"), list):
        raise ImportRejected("expected an object with a 'phases' list")
    found, outside = [], []
    for number, raw in enumerate(doc["phases"]):
        where = f"phases[{number}]"
        if not isinstance(raw, dict):
            raise ImportRejected(f"{where}: expected an object, got {type(raw).__name__}")
        values = [raw.get(k) for k in ("start", "end", "label_id")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) or values[0] > values[1]:
            raise ImportRejected(f"{where}: start and end must be milliseconds (start <= end) and "
                                 f"label_id an integer, got {values}")
        segment = Segment(values[0], values[1], values[2], str(raw.get("label_name", "")))
        if segment.label_id == OUT_OF_BODY:
            outside.append(segment)
        elif segment.label_id == SEVERE_INDEX:
            continue
        elif 0 <= segment.label_id < len(phases):
            expected = phases[segment.label_id].id
            if segment.label_name and segment.label_name.lower() != expected:
                raise ImportRejected(f"{where}: label_id {segment.label_id} is {expected!r}, "
                                     f"but label_name says {segment.label_name!r}")
            found.append(segment)
        else:
            raise ImportRejected(f"{where}: unknown phase label_id {segment.label_id} "
                                 f"({segment.label_name!r}); known: 0-{len(phases) - 1}, 12, 13")
    if not found:
        raise ImportRejected("no phase segments")
    return found, outside


def phase_at(ms: float, phases: list[Segment], outside: list[Segment]) -> Segment | None:
    """The phase segment holding time ``ms`` (the latest-starting one), None outside the body or any phase."""
    if any(s.start <= ms < s.end for s in outside):
        return None
    holding = [s for s in phases if s.start <= ms < s.end]
    return max(holding, key=lambda s: s.start) if holding else None


def index_media(root: Path, videos: set[str]) -> dict[str, tuple[str, Path]]:
    """video name -> ("frames", folder) or ("video", file) for ``videos`` (upper case), in one walk of
    ``root``; a frames folder wins over a video file."""
    found: dict[str, tuple[str, Path]] = {}
    for folder, _, files in os.walk(root):
        path = Path(folder)
        if path.name.upper() in videos and any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            found[path.name.upper()] = ("frames", path)
        for name in files:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in VIDEO_SUFFIXES and stem.upper() in videos:
                found.setdefault(stem.upper(), ("video", path / name))
    return found


def find_jobs(root: Path, options: DatasetOptions, summary: ImportSummary) -> Iterator[VideoJob]:
    files = sorted((p for p in root.rglob("*.json") if _LABEL_FILE.match(p.name)), key=lambda p: p.name)
    if not files:
        summary.rejected.append((root.as_posix(), ("no BBPxx.mp4.json / SBPxx.mp4.json phase files found: "
                                                  "is this the MultiBypass140 folder?")))
        return
    media = index_media(root, {_LABEL_FILE.match(p.name).group(1).upper() for p in files})
    for path in files:
        video = _LABEL_FILE.match(path.name).group(1).upper()
        if not options.wants(video, None):
            continue
        source = relative(path, root)
        try:
            phases, outside = parse_phases(read_json(path, root))
        except ImportRejected as exc:
            summary.rejected.append((source, str(exc)))
            continue
        if video not in media:
            summary.rejected.append((source, (f"no video {video}.mp4 and no frames folder {video}/ "
                                             "under the folder")))
            continue
        kind, where = media[video]
        frames = folder_frames(where, root, native_fps=NATIVE_FPS, fps=options.fps or 1.0,
                               index_of=lambda n: (n - 1) * NATIVE_FPS // FRAMES_FPS) if kind == "frames" \
            else video_frames(where, root, fps=options.fps or 1.0, quality=options.quality)

        def label_for(ref: FrameRef, phases=phases, outside=outside, source=source) -> DatasetLabel | None:
            segment = phase_at(ref.seconds * 1000, phases, outside)
            return None if segment is None else DatasetLabel(
                f"{NAME}:{source}", phase=vocabularies.load(NAME).phases[segment.label_id].id,
                phase_raw=segment.label_name or str(segment.label_id))
        yield VideoJob(video, None, relative(where, root), frames, label_for)


SPEC = DatasetSpec(NAME, "laparoscopic_gastric_bypass", "MultiBypass140 phases", 1.0, find_jobs,
                   has_splits=False)
