"""Cholec80: 80 cholecystectomy videos at 25 fps with a phase for every frame and tool presence every second.

Layout (as published)::

    videos/video01.mp4                       (or frames/video01/00025.png, numbered by source frame)
    phase_annotations/video01-phase.txt      Frame<TAB>Phase, a header line, one line per frame at 25 fps
    tool_annotations/video01-tool.txt        Frame<TAB>Grasper<TAB>...<TAB>SpecimenBag, 0/1 every 25th frame

Tool presence is kept in the label's ``extra["tools"]`` (the names present); a damaged tool file is
reported and the phases still import.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from annotation.importers.common import ImportRejected, ImportSummary
from annotation.importers.datasets.base import (
    DatasetLabel,
    DatasetOptions,
    DatasetSpec,
    FrameRef,
    VideoJob,
    folder_frames,
    read_text,
    relative,
    video_frames,
)
from models import vocabularies

NAME = "cholec80"
NATIVE_FPS = 25
TOOL_EVERY = 25  # tool presence is annotated at 1 fps: every 25th source frame
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
# The split of the dataset's publication (Twinanda et al., EndoNet): videos 1-40 train, 41-80 test.
SPLIT_BY_NUMBER = (range(1, 41), "train"), (range(41, 81), "test")
_PHASE_FILE = re.compile(r"^(video\d+)-phase\.txt$", re.IGNORECASE)


def official_split(video: str) -> str | None:
    number = int(re.sub(r"\D", "", video) or -1)
    return next((split for numbers, split in SPLIT_BY_NUMBER if number in numbers), None)


def parse_phases(text: str) -> dict[int, tuple[str, str]]:
    """``videoNN-phase.txt`` -> {frame: (phase id, raw name)}; ImportRejected names the bad line."""
    vocab = vocabularies.load(NAME)
    phases: dict[int, tuple[str, str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or (number == 1 and line.split()[0].lower() == "frame"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ImportRejected(f"line {number}: expected 'frame<TAB>phase', got {line.strip()[:80]!r}")
        phase = vocab.normalize_phase(parts[1])
        if phase is None:
            known = ", ".join(p.id for p in vocab.phases)
            raise ImportRejected(f"line {number}: unknown phase {parts[1][:80]!r} (known: {known})")
        frame = int(parts[0])
        if frame in phases:
            raise ImportRejected(f"line {number}: frame {frame} is annotated twice")
        phases[frame] = (phase, parts[1])
    if not phases:
        raise ImportRejected("no phase lines")
    return phases


def parse_tools(text: str) -> dict[int, list[str]]:
    """``videoNN-tool.txt`` -> {frame: names of the tools present}; the header names the columns."""
    known = {t.lower(): t for t in vocabularies.load(NAME).lists["tools"]}
    lines = text.splitlines()
    header = lines[0].split() if lines else []
    if not header or header[0].lower() != "frame":
        raise ImportRejected("line 1: expected a header 'Frame<TAB>Grasper<TAB>...'")
    unknown = [name for name in header[1:] if name.lower() not in known]
    if unknown:
        raise ImportRejected(f"line 1: unknown tool column(s) {', '.join(unknown)} "
                             f"(known: {', '.join(known.values())})")
    names = [known[name.lower()] for name in header[1:]]
    tools: dict[int, list[str]] = {}
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(header) or not all(p.isdigit() for p in parts) or set(parts[1:]) - {"0", "1"}:
            raise ImportRejected(f"line {number}: expected a frame and {len(names)} values 0 or 1, "
                                 f"got {line.strip()[:80]!r}")
        tools[int(parts[0])] = [name for name, flag in zip(names, parts[1:], strict=True) if flag == "1"]
    return tools


def find_jobs(root: Path, options: DatasetOptions, summary: ImportSummary) -> Iterator[VideoJob]:
    folder = root / "phase_annotations"
    files = sorted(p for p in folder.glob("*.txt") if _PHASE_FILE.match(p.name)) if folder.is_dir() else []
    if not files:
        summary.rejected.append((root.as_posix(), ("no phase_annotations/videoNN-phase.txt files found: "
                                                  "is this the Cholec80 folder?")))
        return
    for path in files:
        video = _PHASE_FILE.match(path.name).group(1).lower()
        split = official_split(video)
        if options.wants(video, split):
            job = _job(root, path, video, split, options, summary)
            if job is not None:
                yield job


def _job(root: Path, phase_path: Path, video: str, split: str | None, options: DatasetOptions,
         summary: ImportSummary) -> VideoJob | None:
    source = relative(phase_path, root)
    try:
        phases = parse_phases(read_text(phase_path, root))
    except ImportRejected as exc:
        summary.rejected.append((source, str(exc)))
        return None
    tools, tool_source = _tools(root, video, summary)
    media = _media(root, video, options)
    if media is None:
        summary.rejected.append((source, f"no video videos/{video}.mp4 and no frames folder frames/{video}/"))
        return None
    name, frames = media

    def label_for(ref: FrameRef) -> DatasetLabel | None:
        index = ref.index
        if index not in phases:
            return None
        phase, raw = phases[index]
        extra = None
        second = round(index / TOOL_EVERY) * TOOL_EVERY
        if tools is not None and second in tools and abs(second - index) <= TOOL_EVERY // 2:
            extra = {"tools": tools[second], "tools_frame": second, "tools_source": tool_source}
        return DatasetLabel(f"{NAME}:{source}", phase=phase, phase_raw=raw, extra=extra)
    return VideoJob(video, split, name, frames, label_for)


def _tools(root: Path, video: str, summary: ImportSummary) -> tuple[dict[int, list[str]] | None, str | None]:
    path = root / "tool_annotations" / f"{video}-tool.txt"
    if not path.is_file():
        return None, None
    try:
        return parse_tools(read_text(path, root)), relative(path, root)
    except ImportRejected as exc:
        summary.rejected.append((relative(path, root), f"{exc}; the phases import without tools"))
        return None, None


def _media(root: Path, video: str, options: DatasetOptions) -> tuple[str, object] | None:
    """(name, frames) from frames/<video>/ when it holds images, else from videos/<video>.<ext>."""
    folder = root / "frames" / video
    if folder.is_dir():
        frames = folder_frames(folder, root, native_fps=NATIVE_FPS, fps=options.fps or 1.0,
                               index_of=lambda number: number * options.frame_index_scale)
        if frames:
            return relative(folder, root), frames
    for suffix in VIDEO_SUFFIXES:
        path = root / "videos" / f"{video}{suffix}"
        if path.is_file():
            return relative(path, root), video_frames(path, root, fps=options.fps or 1.0,
                                                      quality=options.quality)
    return None


SPEC = DatasetSpec(NAME, "laparoscopic_cholecystectomy", "Cholec80 phases and tool presence", 1.0, find_jobs)
