"""SAR-RARP50: robot-assisted radical prostatectomy suturing videos with one action every 6th frame.

Layout (as published; train folders may be train1/, train2/)::

    train1/video_01/video_left.avi           60 fps left-eye video (or rgb/000000060.png, by frame number)
    train1/video_01/action_discrete.txt      lines "frame,action": action 0-7 at 10 Hz (every 6th frame)
    test/video_41/...

An action holds from its frame until the next annotated frame. Actions become names of the SAR-RARP50
vocabulary (``models/vocabularies/sar_rarp50.toml``).
"""

from __future__ import annotations

import itertools
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
    step_lookup,
    video_frames,
)
from models import vocabularies

NAME = "sar_rarp50"
NATIVE_FPS = 60
ACTION_FILE = "action_discrete.txt"
TEST_FROM = 41  # the challenge's test set is videos 41-50; 1-40 are the training set
_VIDEO = re.compile(r"^video_?(\d+)$", re.IGNORECASE)


def official_split(folder: Path, root: Path) -> str | None:
    """train or test from the folder the video sits in (train1/, test/), else from its number."""
    for part in folder.relative_to(root).parts[:-1]:
        if part.lower().startswith("train"):
            return "train"
        if part.lower().startswith("test"):
            return "test"
    match = _VIDEO.match(folder.name)
    return None if match is None else ("test" if int(match.group(1)) >= TEST_FROM else "train")


def parse_actions(text: str) -> dict[int, tuple[str, int]]:
    """``action_discrete.txt`` -> {frame: (action name, action id)}; ImportRejected names the bad line."""
    actions = vocabularies.load(NAME).lists["actions"]
    found: dict[int, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ImportRejected(f"line {number}: expected 'frame,action', got {line.strip()[:80]!r}")
        frame, action = int(parts[0]), int(parts[1])
        if action >= len(actions):
            raise ImportRejected(f"line {number}: unknown action {action} (known: 0-{len(actions) - 1})")
        if frame in found:
            raise ImportRejected(f"line {number}: frame {frame} is annotated twice")
        found[frame] = (actions[action], action)
    if not found:
        raise ImportRejected("no action lines")
    return found


def find_jobs(root: Path, options: DatasetOptions, summary: ImportSummary) -> Iterator[VideoJob]:
    files = sorted(p for p in root.rglob(ACTION_FILE) if p.is_file() and _VIDEO.match(p.parent.name))
    if not files:
        summary.rejected.append((root.as_posix(), (f"no video_XX/{ACTION_FILE} found: "
                                                  "is this the SAR-RARP50 folder?")))
        return
    for path in files:
        folder = path.parent
        video, split = folder.name, official_split(folder, root)
        if not options.wants(video, split):
            continue
        source = relative(path, root)
        try:
            actions = parse_actions(read_text(path, root))
        except ImportRejected as exc:
            summary.rejected.append((source, str(exc)))
            continue
        media = _media(folder, root, options)
        if media is None:
            summary.rejected.append((source, ("no video_left.avi and no rgb/ frames in "
                                             f"{relative(folder, root)}/")))
            continue
        frames_sorted = sorted(actions)
        step = min((b - a for a, b in itertools.pairwise(frames_sorted)), default=6)
        lookup = step_lookup(actions, max_gap=max(step, 1))

        def label_for(ref: FrameRef, lookup=lookup, source=source) -> DatasetLabel | None:
            found = lookup(ref.index)
            return None if found is None else DatasetLabel(f"{NAME}:{source}", action=found[0],
                                                           extra={"action_id": found[1]})
        yield VideoJob(video, split, media[0], media[1], label_for)


def _media(folder: Path, root: Path, options: DatasetOptions) -> tuple[str, object] | None:
    rgb = folder / "rgb"
    if rgb.is_dir():
        frames = folder_frames(rgb, root, native_fps=NATIVE_FPS, fps=options.fps or 1.0)
        if frames:
            return relative(rgb, root), frames
    video = folder / "video_left.avi"
    if video.is_file():
        return relative(video, root), video_frames(video, root, fps=options.fps or 1.0,
                                                   quality=options.quality)
    return None


SPEC = DatasetSpec(NAME, "robotic_prostatectomy", "SAR-RARP50 suturing actions", 1.0, find_jobs)
