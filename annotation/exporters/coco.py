"""Export the current Go Zone reference labels as one COCO object-detection file with the images beside it.

Layout: ``<target>/annotations.json`` and ``<target>/images/<dataset>/<video>/<frame>.<ext>``; each image's
``file_name`` is relative to the folder of annotations.json (use ``<target>`` as the image root).

Categories (``categories=``):
- ``"phase"`` (default): one category per phase: ResGo A-D always first (ids 1-4), then the phases of any
  other Go Zone vocabulary in use (other procedures), so a detector learns phase and zone together and COCO
  metrics come per phase; a label without a phase is skipped.
- ``"go_zone"``: a single "go_zone" category; the phase is only an attribute, labels without one are kept.
Every annotation carries ``attributes`` (phase, the four rationale texts, the label's source) beside the
standard keys: ``bbox`` [x, y, w, h] in original pixels, ``area`` w*h, ``iscrowd`` 0, and the rectangle as
a ``segmentation`` polygon. Images carry their ``case_key``. No timestamps: the same labels give the same
file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.orm import Session

from annotation.exporters.common import (
    RATIONALE_KEYS,
    ExportSummary,
    GoZoneItem,
    NameAllocator,
    content_sha256,
    copy_frame,
    filters_of,
    record_export,
    select_go_zones,
    staged_directory,
)
from db.cases import CaseFilter
from db.frames import FrameStore
from models import vocabularies
from models.boxes import canonical_to_coco

CategoryMode = Literal["phase", "go_zone"]
ANNOTATIONS_FILE = "annotations.json"
IMAGES_FOLDER = "images"
GO_ZONE_CATEGORY = {"id": 1, "name": "go_zone", "supercategory": "go_zone"}


def export_coco(session: Session, store: FrameStore, target: Path, case_filter: CaseFilter | None = None, *,
                approved_only: bool = False, categories: CategoryMode = "phase", overwrite: bool = False,
                actor: str = "system") -> ExportSummary:
    """Write the current Go Zone labels of the cases ``case_filter`` selects as COCO into folder ``target``.

    ``approved_only`` keeps only labels made by approving an annotation; ``categories`` is "phase" or
    "go_zone" (see the module docstring). ``target`` must not exist unless ``overwrite`` (Conflict otherwise).
    Records an export row and an ``export.coco`` audit event (the caller commits). Returns the summary.
    """
    if categories not in ("phase", "go_zone"):
        raise ValueError(f"categories must be 'phase' or 'go_zone', got {categories!r}")
    case_filter = case_filter or CaseFilter()
    summary = ExportSummary("coco", Path(target).absolute())
    items = select_go_zones(session, case_filter, approved_only=approved_only, summary=summary)
    category_ids, category_list = _categories(items, categories)
    filters = filters_of(case_filter, approved_only=approved_only, categories=categories)
    document: dict[str, Any] = {
        "info": {"description": "SurgReview Go Zone reference labels", "version": "1.0",
                 "contributor": "SurgReview", "categories": categories, "filters": filters},
        "licenses": [], "images": [], "annotations": [], "categories": category_list}
    hashes: dict[str, str] = {}
    with staged_directory(Path(target), overwrite=overwrite) as staging:
        names, folders = NameAllocator(IMAGES_FOLDER), set()
        for item in items:
            category = category_ids.get(item.label.phase) if categories == "phase" else GO_ZONE_CATEGORY["id"]
            if category is None:
                summary.skipped.append((item.case.key, "no phase; export with categories='go_zone' "
                                                       "to keep labels without one"))
                continue
            file_name = names.allocate(item.case.key, (item.image_suffix,)) + item.image_suffix
            try:
                copy_frame(store.path(item.frame), staging / file_name, folders)
            except FileNotFoundError:
                summary.skipped.append((item.case.key, f"the frame file {item.frame.path} is missing from "
                                                       "the frame store"))
                continue
            number = len(document["images"]) + 1
            document["images"].append(_image(number, file_name, item))
            document["annotations"].append(_annotation(number, category, item))
            summary.exported.append(item.case.key)
            summary.files[item.case.key] = file_name
            hashes[file_name] = item.frame.sha256
        data = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        (staging / ANNOTATIONS_FILE).write_bytes(data)
        hashes[ANNOTATIONS_FILE] = hashlib.sha256(data).hexdigest()
    summary.sha256 = content_sha256(hashes)
    record_export(session, summary, fmt="coco", filters=filters, actor=actor)
    return summary


def _categories(items: list[GoZoneItem], mode: CategoryMode) -> tuple[dict[str | None, int], list[dict]]:
    """(phase id -> category id, the categories list). Phase mode: every phase of ResGo (always, so A-D keep
    ids 1-4 whatever is selected), then of each other vocabulary in use sorted by name."""
    if mode == "go_zone":
        return {}, [dict(GO_ZONE_CATEGORY)]
    in_use = {item.vocabulary.name: item.vocabulary for item in items} | {"resgo": vocabularies.load("resgo")}
    ids: dict[str | None, int] = {}
    listed = []
    for name in sorted(in_use, key=lambda n: (n != "resgo", n)):
        for phase in in_use[name].phases:
            if phase.id in ids:  # two vocabularies with the same phase id: the first one names it
                continue
            ids[phase.id] = len(listed) + 1
            listed.append({"id": ids[phase.id], "name": phase.id, "supercategory": "go_zone",
                           "phase_name": phase.name, "vocabulary": name})
    return ids, listed


def _image(number: int, file_name: str, item: GoZoneItem) -> dict[str, Any]:
    case = item.case
    return {"id": number, "file_name": file_name, "width": item.frame.width, "height": item.frame.height,
            "case_key": case.key, "dataset": case.dataset, "video": case.video,
            "frame_index": case.frame_index}


def _annotation(number: int, category: int, item: GoZoneItem) -> dict[str, Any]:
    x, y, w, h = canonical_to_coco(item.box)
    box = item.box
    return {"id": number, "image_id": number, "category_id": category, "bbox": [x, y, w, h], "area": w * h,
            "iscrowd": 0, "segmentation": [[box.x1, box.y1, box.x2, box.y1, box.x2, box.y2, box.x1, box.y2]],
            "attributes": {"phase": item.label.phase,
                           **{key: getattr(item.label, key) for key in RATIONALE_KEYS},
                           "source": item.label.source}}
