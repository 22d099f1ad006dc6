"""Endoscapes2023: cholecystectomy frames with critical-view-of-safety labels averaged over 3 annotators, and
bounding boxes of anatomy and tools, in COCO files per official split folder.

Layout (as published)::

    train/1_29375.jpg                        VIDEO_FRAME.jpg, frame numbered at 25 fps
    train/annotation_ds_coco.json            CVS keyframes: images carry "ds": [C1, C2, C3], "is_ds_keyframe"
    train/annotation_coco.json               detection keyframes: COCO "annotations" with "bbox": [x, y, w, h]
    val/...  test/...

Each C is the share of annotators who saw the criterion (0, 1/3, 2/3, 1). The label keeps the fractions and
derives yes/no with the CVS threshold: ``{"C1": true, "C2": false, "C3": true, "fractions": {"C1": 0.67,
...}, "threshold": 0.5}``, so every reader of C1-C3 sees the same decision. Boxes become canonical pixels.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotation.importers.common import ImportRejected, ImportSummary
from annotation.importers.datasets.base import (
    DatasetLabel,
    DatasetOptions,
    DatasetSpec,
    FrameRef,
    VideoJob,
    file_loader,
    on_grid,
    read_json,
    relative,
)
from models import vocabularies
from models.boxes import BoxError, coco_to_canonical, fit_box

NAME = "endoscapes"
NATIVE_FPS = 25
SPLITS = ("train", "val", "test")
CVS_FILE, BOX_FILE = "annotation_ds_coco.json", "annotation_coco.json"
_IMAGE_NAME = re.compile(r"^(\d+)_(\d+)\.\w+$")


@dataclass
class ImageEntry:
    """One COCO image of a split folder, with what the files say about it."""

    file_name: str
    video: str
    frame: int
    width: int | None
    height: int | None
    cvs: Any = None                       # the raw "ds" value of a CVS keyframe
    cvs_source: str | None = None
    boxes: list[dict[str, Any]] = field(default_factory=list)
    boxes_source: str | None = None


def criteria() -> list[str]:
    return [c["id"] for c in vocabularies.load(NAME).items["criteria"]]


def cvs_label(raw: Any, threshold: float) -> dict[str, Any]:
    """``ds`` [C1, C2, C3] fractions -> {"C1": bool, ..., "fractions": {...}, "threshold": t}."""
    names = criteria()
    if not (isinstance(raw, list) and len(raw) == len(names)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in raw)):
        raise ImportRejected(f"ds must be {len(names)} fractions between 0 and 1, got {raw!r}")
    fractions = {name: float(value) for name, value in zip(names, raw, strict=True)}
    return {**{name: value >= threshold for name, value in fractions.items()},
            "fractions": fractions, "threshold": threshold}


def _read_coco(path: Path, root: Path) -> dict[str, Any]:
    doc = read_json(path, root)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ImportRejected("a COCO file is an object with an 'images' list")
    for key in ("annotations", "categories"):
        if not isinstance(doc.get(key, []), list):
            raise ImportRejected(f"'{key}' must be a list")
    return doc


def _entries(doc: dict[str, Any], split: str, summary: ImportSummary) -> dict[int, ImageEntry]:
    """COCO image id -> entry; images without a VIDEO_FRAME file name are reported and left out."""
    entries = {}
    for image in doc["images"]:
        name = image.get("file_name") if isinstance(image, dict) else None
        match = _IMAGE_NAME.match(Path(name).name) if isinstance(name, str) else None
        if match is None or not isinstance(image.get("id"), int):
            summary.rejected.append((f"{split}/{name}", ("an image needs an integer id and a file name "
                                                        "VIDEO_FRAME.jpg")))
            continue
        size = image.get("width"), image.get("height")
        valid_size = all(isinstance(v, int) and v > 0 for v in size)
        entries[image["id"]] = ImageEntry(Path(name).name, match.group(1), int(match.group(2)),
                                          *(size if valid_size else (None, None)))
    return entries


def _add_cvs(doc: dict[str, Any], entries: dict[int, ImageEntry], source: str) -> None:
    for image in doc["images"]:
        entry = entries.get(image.get("id")) if isinstance(image, dict) else None
        # Frames between keyframes carry the last keyframe's label forward: not a label of their own.
        if entry is not None and "ds" in image and image.get("is_ds_keyframe", True) is not False:
            entry.cvs, entry.cvs_source = image["ds"], source


def _add_boxes(doc: dict[str, Any], entries: dict[int, ImageEntry], source: str,
               summary: ImportSummary) -> None:
    names = {c.get("id"): c.get("name") for c in doc.get("categories", []) if isinstance(c, dict)}
    for number, annotation in enumerate(doc.get("annotations", []), start=1):
        entry = entries.get(annotation.get("image_id")) if isinstance(annotation, dict) else None
        if entry is None:
            summary.warnings.append((source, f"annotation {number} refers to no known image; ignored"))
            continue
        if entry.boxes_source not in (None, source):
            continue  # boxes already read from the other file for this image
        try:
            entry.boxes.append(_box(annotation, names, entry))
        except ImportRejected as exc:
            summary.warnings.append((source, f"annotation {number} of {entry.file_name}: {exc}; box dropped"))
            continue
        entry.boxes_source = source


def _box(annotation: dict[str, Any], names: dict[Any, Any], entry: ImageEntry) -> dict[str, Any]:
    name = names.get(annotation.get("category_id"))
    bbox = annotation.get("bbox")
    if not isinstance(name, str):
        raise ImportRejected(f"unknown category id {annotation.get('category_id')!r}")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
        raise ImportRejected(f"bbox must be [x, y, w, h], got {bbox!r}")
    x1, y1, x2, y2 = coco_to_canonical(*bbox)
    width, height = entry.width or max(x1, x2), entry.height or max(y1, y2)
    try:
        fitted = fit_box(x1, y1, x2, y2, width, height)
    except BoxError as exc:
        raise ImportRejected(str(exc)) from exc
    return {"label": name, "box": list(fitted.box.as_tuple())}


def _split_entries(root: Path, split: str, summary: ImportSummary) -> list[ImageEntry]:
    """Every image of one split folder with its CVS (from annotation_ds_coco.json) and boxes."""
    folder = root / split
    by_name: dict[str, ImageEntry] = {}
    for file_name in (CVS_FILE, BOX_FILE):
        path = folder / file_name
        if not path.is_file():
            continue
        source = relative(path, root)
        try:
            doc = _read_coco(path, root)
        except ImportRejected as exc:
            summary.rejected.append((source, str(exc)))
            continue
        entries = _entries(doc, split, summary)
        for entry in entries.values():
            by_name.setdefault(entry.file_name, entry)
        entries = {k: by_name[e.file_name] for k, e in entries.items()}
        if file_name == CVS_FILE:
            _add_cvs(doc, entries, source)
        _add_boxes(doc, entries, source, summary)
    return list(by_name.values())


def entry_label(entry: ImageEntry, threshold: float) -> DatasetLabel | None:
    if entry.cvs is None and not entry.boxes:
        return None
    try:
        cvs = cvs_label(entry.cvs, threshold) if entry.cvs is not None else None
    except ImportRejected as exc:
        raise ImportRejected(f"{entry.cvs_source}: image {entry.file_name}: {exc}") from exc
    source = entry.cvs_source or entry.boxes_source
    extra = {"boxes_source": entry.boxes_source} if entry.boxes and entry.boxes_source != source else None
    return DatasetLabel(f"{NAME}:{source}", cvs=cvs, boxes=entry.boxes or None, extra=extra)


def find_jobs(root: Path, options: DatasetOptions, summary: ImportSummary) -> Iterator[VideoJob]:
    present = [s for s in SPLITS if (root / s / CVS_FILE).is_file() or (root / s / BOX_FILE).is_file()]
    if not present:
        summary.rejected.append((root.as_posix(), (f"no train/, val/ or test/ folder with {CVS_FILE} or "
                                                  f"{BOX_FILE}: is this the Endoscapes folder?")))
        return
    for split in present:
        if options.splits and split not in options.splits:
            continue
        videos: dict[str, list[ImageEntry]] = {}
        for entry in _split_entries(root, split, summary):
            videos.setdefault(entry.video, []).append(entry)
        for video in sorted(videos, key=lambda v: int(v)):
            if options.wants(video, split):
                yield _job(root, split, video, sorted(videos[video], key=lambda e: e.frame), options)


def _job(root: Path, split: str, video: str, entries: list[ImageEntry], options: DatasetOptions) -> VideoJob:
    times = [e.frame / NATIVE_FPS for e in entries]
    period = min((b - a for a, b in itertools.pairwise(times) if b > a), default=1.0 / NATIVE_FPS)
    chosen = [entries[i] for i in on_grid(times, options.fps, period)]
    frames = [FrameRef(e.frame, e.frame / NATIVE_FPS, f"{split}/{e.file_name}",
                       file_loader(root / split / e.file_name)) for e in chosen]
    by_frame = {e.frame: e for e in chosen}
    return VideoJob(video, split, f"{split}/video {video}", frames,
                    lambda ref: entry_label(by_frame[ref.index], options.cvs_threshold))


SPEC = DatasetSpec(NAME, "laparoscopic_cholecystectomy", "Endoscapes critical view of safety", None,
                   find_jobs)
