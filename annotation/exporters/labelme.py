"""Export the current Go Zone reference labels as LabelMe files: the exact inverse of the LabelMe importer.

One JSON file and one image per case, at ``<target>/<dataset>/<video>/<frame>.json`` (the case key made
into a safe path) with the image beside it (``imagePath`` is its file name, ``imageData`` null). Importing
``<target>/<dataset>`` with that dataset name gives the cases their keys again.

Round trip: what the importer kept in ``Label.extra`` (unknown top-level keys, ``flags``, the rectangle's
unknown keys) is written back with the same JSON values; the box, phase and texts come from the label.
The phase is written where the importer reads it: in ``flags`` (a label without LabelMe origin gets one flag
per phase of its vocabulary, the phase's set true, and the rectangle label "Go Zone"). The location text
goes into the rectangle's ``description`` (which LabelMe shows and edits) unless the file had its own
description, and then into a top-level ``location`` key; the other three texts are top-level keys.
A file written here and imported again exports byte for byte the same.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

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
from annotation.importers.common import ImportRejected
from annotation.importers.labelme import phase_from
from db.cases import CaseFilter
from db.frames import FrameStore
from models.boxes import canonical_to_labelme
from models.vocabularies import Vocabulary

LABELME_VERSION = "5.4.1"
GO_ZONE_LABEL = "Go Zone"
# LabelMe's own key order; keys it does not know follow in the order they were imported.
TOP_ORDER = ("version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth",
             *RATIONALE_KEYS)
SHAPE_ORDER = ("label", "points", "group_id", "description", "shape_type", "flags", "mask")


def export_labelme(session: Session, store: FrameStore, target: Path, case_filter: CaseFilter | None = None,
                   *, approved_only: bool = False, overwrite: bool = False,
                   actor: str = "system") -> ExportSummary:
    """Write the current Go Zone labels of the cases ``case_filter`` selects as LabelMe files in ``target``.

    ``approved_only`` keeps only labels made by approving an annotation. ``target`` must not exist unless
    ``overwrite`` (Conflict otherwise); it is replaced whole at the end. Records an export row and an
    ``export.labelme`` audit event (the caller commits). Returns the summary (exported, skipped, files).
    """
    case_filter = case_filter or CaseFilter()
    summary = ExportSummary("labelme", Path(target).absolute())
    items = select_go_zones(session, case_filter, approved_only=approved_only, summary=summary)
    hashes: dict[str, str] = {}
    with staged_directory(Path(target), overwrite=overwrite) as staging:
        names, folders = NameAllocator(), set()
        for item in items:
            reason = _write_item(store, staging, names.allocate(item.case.key, (".json", item.image_suffix)),
                                 item, folders, summary, hashes)
            if reason is not None:
                summary.skipped.append((item.case.key, reason))
    summary.sha256 = content_sha256(hashes)
    record_export(session, summary, fmt="labelme", actor=actor,
                  filters=filters_of(case_filter, approved_only=approved_only))
    return summary


def _write_item(store: FrameStore, staging: Path, stem: str, item: GoZoneItem, folders: set[Path],
                summary: ExportSummary, hashes: dict[str, str]) -> str | None:
    """Write one case's image and JSON under ``staging``; the reason when it cannot be exported, else None."""
    image_name = f"{stem}{item.image_suffix}"
    try:
        data = labelme_json(item, Path(image_name).name)
    except (ValueError, UnicodeEncodeError) as exc:  # NaN or Infinity in kept keys, unencodable text
        return f"the label cannot be written as JSON ({exc})"
    try:
        copy_frame(store.path(item.frame), staging / image_name, folders)
    except FileNotFoundError:
        return f"the frame file {item.frame.path} is missing from the frame store"
    (staging / f"{stem}.json").write_bytes(data)
    summary.exported.append(item.case.key)
    summary.files[item.case.key] = f"{stem}.json"
    hashes[f"{stem}.json"] = hashlib.sha256(data).hexdigest()
    hashes[image_name] = item.frame.sha256
    return None


def labelme_json(item: GoZoneItem, image_name: str) -> bytes:
    """The LabelMe file of ``item`` (UTF-8, indented as LabelMe writes it), its image at ``image_name``."""
    document = labelme_document(item, image_name)
    return json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False).encode("utf-8")


def labelme_document(item: GoZoneItem, image_name: str) -> dict[str, Any]:
    """The LabelMe object of ``item``: kept keys from the label's extra, the rest from the label."""
    label, frame = item.label, item.frame
    kept = kept_keys(label.extra)
    top, shape = kept or fresh_keys(item.vocabulary)
    texts = {key: getattr(label, key) for key in RATIONALE_KEYS}
    location_in_description = _place_location(shape, texts["location"], fresh=kept is None)
    encode_phase(top, shape, label.phase, item.vocabulary)
    modeled_shape = {"points": canonical_to_labelme(item.box), "shape_type": "rectangle"}
    modeled_top: dict[str, Any] = {"shapes": [_ordered(SHAPE_ORDER, modeled_shape, shape)],
                                   "imagePath": image_name, "imageData": None,
                                   "imageHeight": frame.height, "imageWidth": frame.width}
    modeled_top.update({key: text for key, text in texts.items()
                        if text is not None and not (key == "location" and location_in_description)})
    return _ordered(TOP_ORDER, modeled_top, top)


def kept_keys(extra: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Copies of the (top-level, rectangle) keys the LabelMe importer kept in ``extra``, or None."""
    if isinstance(extra, dict) and all(isinstance(extra.get(part), dict) for part in ("top", "shape")):
        return dict(extra["top"]), dict(extra["shape"])
    return None


def fresh_keys(vocabulary: Vocabulary) -> tuple[dict[str, Any], dict[str, Any]]:
    """LabelMe's own keys for a label that did not come from a LabelMe file: one flag per phase."""
    top = {"version": LABELME_VERSION, "flags": {phase.id: False for phase in vocabulary.phases}}
    shape = {"label": GO_ZONE_LABEL, "group_id": None, "description": "", "flags": {}, "mask": None}
    return top, shape


def _place_location(shape: dict[str, Any], location: str | None, *, fresh: bool) -> bool:
    """Whether the rectangle's description carries ``location`` (the importer's fallback for it).

    A fresh rectangle takes it as its description; a kept description is left as it was and the location is
    then written as a top-level key, which the importer reads first.
    """
    description = shape.get("description")
    if fresh:
        shape["description"] = location or ""
        return True
    if location is None:
        if isinstance(description, str) and description.strip():
            shape["description"] = ""  # it would be read back as a location the label does not have
        return True
    return description == location


def encode_phase(top: dict[str, Any], shape: dict[str, Any], phase: str | None,
                 vocabulary: Vocabulary) -> None:
    """Make ``top["flags"]`` and the rectangle label say ``phase`` the way the importer reads it.

    Flags and label that already say it are left untouched (so an imported file's flags come back as they
    were); otherwise phase flags are set false, the phase's own flag true, and a label naming another phase
    becomes "Go Zone".
    """
    flags, label = top.get("flags"), shape.get("label")
    try:
        if phase_from({} if flags is None else flags, label, vocabulary)[0] == phase:
            return
    except ImportRejected:
        pass  # conflicting or malformed: rewritten below
    flags = dict(flags) if isinstance(flags, dict) else {p.id: False for p in vocabulary.phases}
    named = False
    for key in flags:
        names = vocabulary.normalize_phase(key)
        if names is not None:
            flags[key] = names == phase and not named
            named = named or flags[key]
    if phase is not None and not named:
        flags[phase] = True
    top["flags"] = flags
    if not isinstance(label, str) or _label_phase(label, vocabulary) not in (None, phase):
        shape["label"] = GO_ZONE_LABEL


def _label_phase(label: str, vocabulary: Vocabulary) -> str | None:
    try:
        return phase_from({}, label, vocabulary)[0]
    except ImportRejected:
        return None


def _ordered(order: tuple[str, ...], modeled: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """Keys in ``order`` first (modeled values win over kept ones), then the other kept keys as they were."""
    merged = {key: modeled[key] if key in modeled else kept[key] for key in order
              if key in modeled or key in kept}
    merged.update((key, value) for key, value in kept.items() if key not in merged)
    return merged
