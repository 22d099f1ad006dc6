"""CholecT50: 50 cholecystectomy videos, frames at 1 fps, action triplets per frame (CAMMA's format).

Layout::

    videos/VID01/000000.png ...   854x480 frames at 1 fps, numbered by image id
    labels/VID01.json             {"video", "fps", "num_frames",
                                   "categories": {"triplet": {"0": "grasper,dissect,cystic_plate", ...},
                                                  "instrument": {...}, "verb", "target", "phase"},
                                   "annotations": {"0": [[15 values], ...], ...}}

Each annotation vector: [triplet id, instrument id, instrument score, x, y, w, h, verb id, target id, target
score, x, y, w, h, phase id], boxes as fractions of the frame, -1 for absent. Triplets become
[instrument, verb, target] names, instrument boxes canonical pixels, the phase a Cholec80 phase id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotation.importers.common import ImportRejected, ImportSummary
from annotation.importers.datasets.base import (
    DatasetLabel,
    DatasetOptions,
    DatasetSpec,
    VideoJob,
    folder_frames,
    read_json,
    relative,
)
from models import vocabularies

NAME = "cholect50"
VECTOR_LENGTH = 15
# The "cholect50" split of the official loader (Rendezvous paper), by video number.
SPLITS = {
    "train": {1, 15, 26, 40, 52, 65, 79, 2, 18, 27, 43, 56, 66, 92, 4, 22, 31, 47, 57, 68, 96, 5, 23, 35, 48,
              60, 70, 103, 13, 25, 36, 49, 62, 75, 110},
    "val": {8, 12, 29, 50, 78},
    "test": {6, 51, 10, 73, 14, 74, 32, 80, 42, 111},
}
# CholecT50's phase category names that Cholec80's vocabulary does not spell the same way.
PHASE_SPELLINGS = {"carlot-triangle-dissection": "CalotTriangleDissection",
                   "gallbladder-extraction": "GallbladderRetraction"}
_LABEL_FILE = re.compile(r"^(VID\d+)\.json$", re.IGNORECASE)


def official_split(video: str) -> str | None:
    number = int(re.sub(r"\D", "", video) or -1)
    return next((split for split, numbers in SPLITS.items() if number in numbers), None)


def _category_map(categories: dict[str, Any], kind: str, allowed: tuple[str, ...] | None) -> dict[int, str]:
    table = categories.get(kind)
    if not isinstance(table, dict):
        raise ImportRejected(f"categories.{kind} must map ids to names")
    out = {}
    for key, name in table.items():
        if not (isinstance(key, str) and key.lstrip("-").isdigit() and isinstance(name, str)):
            raise ImportRejected(f"categories.{kind}: {key!r}: {name!r} is not an id and a name")
        if allowed is not None and name not in allowed:
            raise ImportRejected(f"categories.{kind}: unknown name {name!r} (known: {', '.join(allowed)})")
        out[int(key)] = name
    return out


def _phase_id(name: str) -> str:
    phase = PHASE_SPELLINGS.get(name) or vocabularies.load("cholec80").normalize_phase(name)
    if phase is None:
        raise ImportRejected(f"categories.phase: unknown phase {name!r}")
    return phase


class LabelFile:
    """A parsed ``labels/VIDxx.json``: category tables and per-frame instance vectors, checked."""

    def __init__(self, doc: Any) -> None:
        if not isinstance(doc, dict) or not isinstance(doc.get("categories"), dict) \
                or not isinstance(doc.get("annotations"), dict):
            raise ImportRejected("expected an object with 'categories' and 'annotations' objects")
        vocab = vocabularies.load(NAME).lists
        categories = doc["categories"]
        self.instruments = _category_map(categories, "instrument", vocab["instruments"])
        self.verbs = _category_map(categories, "verb", vocab["verbs"])
        self.targets = _category_map(categories, "target", vocab["targets"])
        self.triplets = _category_map(categories, "triplet", None) if "triplet" in categories else {}
        self.phases = {k: (_phase_id(v), v) for k, v in _category_map(categories, "phase", None).items()} \
            if "phase" in categories else {}
        fps = doc.get("fps", 1)
        if isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0:
            raise ImportRejected(f"fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self.frames: dict[int, list[list[Any]]] = {}
        for key, instances in doc["annotations"].items():
            if not (isinstance(key, str) and key.isdigit()):
                raise ImportRejected(f"annotations: frame key {key!r} is not a frame number")
            if not isinstance(instances, list):
                raise ImportRejected(f"annotations[{key}] must be a list of instance vectors")
            self.frames[int(key)] = [self._checked(key, n, v) for n, v in enumerate(instances, start=1)]

    def _checked(self, frame: str, number: int, vector: Any) -> list[Any]:
        where = f"annotations[{frame}] instance {number}"
        if not isinstance(vector, list) or len(vector) < VECTOR_LENGTH:
            size = len(vector) if isinstance(vector, list) else type(vector).__name__
            raise ImportRejected(f"{where}: expected {VECTOR_LENGTH} values, got {size}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector[:VECTOR_LENGTH]):
            raise ImportRejected(f"{where}: values must be numbers")
        for position, table, kind in ((0, self.triplets, "triplet"), (1, self.instruments, "instrument"),
                                      (7, self.verbs, "verb"), (8, self.targets, "target"),
                                      (14, self.phases, "phase")):
            value = int(vector[position])
            if value != -1 and table and value not in table:
                raise ImportRejected(f"{where}: unknown {kind} id {value}")
        if int(vector[0]) != -1 and -1 in (int(vector[1]), int(vector[7]), int(vector[8])) \
                and len(self.triplets.get(int(vector[0]), "").split(",")) != 3:
            raise ImportRejected(f"{where}: triplet id {int(vector[0])} has no instrument, verb and target")
        return vector

    def label(self, source: str, frame: int) -> DatasetLabel | None:
        """The label of image ``frame``, or None when the file does not annotate it."""
        instances = self.frames.get(frame)
        if instances is None:
            return None
        triplets, boxes, phase = [], [], None
        for vector in instances:
            triplet = self._triplet(vector)
            if triplet is not None and triplet not in triplets:
                triplets.append(triplet)
            instrument = int(vector[1])
            box = tuple(float(v) for v in vector[3:7])
            if instrument != -1 and all(v != -1 for v in box) and box[2] > 0 and box[3] > 0:
                boxes.append((self.instruments[instrument], box))
            if int(vector[14]) != -1 and self.phases:
                phase = self.phases[int(vector[14])]
        return DatasetLabel(source, phase=phase[0] if phase else None, phase_raw=phase[1] if phase else None,
                            triplets=triplets, relative_boxes=tuple(boxes))

    def _triplet(self, vector: list[Any]) -> list[str] | None:
        triplet_id, instrument, verb, target = (int(vector[i]) for i in (0, 1, 7, 8))
        if triplet_id == -1:
            return None
        if -1 not in (instrument, verb, target):
            return [self.instruments[instrument], self.verbs[verb], self.targets[target]]
        return [p.strip() for p in self.triplets[triplet_id].split(",")]


def find_jobs(root: Path, options: DatasetOptions, summary: ImportSummary) -> Iterator[VideoJob]:
    folder = root / "labels"
    files = sorted(p for p in folder.glob("*.json") if _LABEL_FILE.match(p.name)) if folder.is_dir() else []
    if not files:
        summary.rejected.append((root.as_posix(), ("no labels/VIDxx.json files found: "
                                                  "is this the CholecT50 folder?")))
        return
    for path in files:
        video = _LABEL_FILE.match(path.name).group(1).upper()
        split = official_split(video)
        if not options.wants(video, split):
            continue
        source = relative(path, root)
        try:
            labels = LabelFile(read_json(path, root))
        except ImportRejected as exc:
            summary.rejected.append((source, str(exc)))
            continue
        frames_dir = root / "videos" / video
        if not frames_dir.is_dir():
            summary.rejected.append((source, f"no frames folder videos/{video}/"))
            continue
        frames = folder_frames(frames_dir, root, native_fps=labels.fps, fps=options.fps)
        warnings = []
        if options.fps is not None and options.fps > labels.fps:
            warnings.append(f"frames exist at {labels.fps:g} fps only; all of them are imported")
        yield VideoJob(video, split, relative(frames_dir, root), frames,
                       lambda ref, labels=labels, source=source: labels.label(f"{NAME}:{source}", ref.index),
                       warnings)


SPEC = DatasetSpec(NAME, "laparoscopic_cholecystectomy", "CholecT50 action triplets", 1.0, find_jobs)
