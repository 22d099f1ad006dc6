"""Import LabelMe JSON files holding one Go Zone rectangle per frame as cases with reference labels.

Each JSON file is one item: its image (the file beside it, or the embedded ``imageData``) becomes a case,
its single rectangle the Go Zone box of the case's current label. Keys we do not model are kept in
``Label.extra`` so an export can write the file back as it came.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotation.importers.common import CaseMeta, ImportRejected, ImportSummary, add_case, item_scope
from annotation.importers.frames import position_from_path
from annotation.workflow import gozone_vocabulary
from db import audit
from db.frames import FrameStore, ValidatedImage
from db.schema import Case, Label
from db.text import storable
from models import vocabularies
from models.boxes import BoxError, labelme_to_canonical

MAX_JSON_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 10_000
RATIONALE_KEYS = ("location", "exposure", "next_action", "critical_risk")
# Top-level keys held in columns (or, for imageData, deliberately dropped); everything else goes to extra.
MODELED_TOP_KEYS = {"shapes", "imageData", "imageHeight", "imageWidth", *RATIONALE_KEYS}
MODELED_SHAPE_KEYS = {"points", "shape_type"}
_GO_ZONE_PREFIX = re.compile(r"^\s*go[\s_-]*zone[\s_:-]*", re.IGNORECASE)


@dataclass(frozen=True)
class GoZoneLabel:
    """What one LabelMe file says about its frame, ready to store."""

    phase: str | None
    phase_raw: str | None
    box: tuple[float, float, float, float]
    texts: dict[str, str | None]
    extra: dict[str, Any]
    warnings: list[str] = field(default_factory=list, compare=False)

    @property
    def content_sha256(self) -> str:
        """sha256 of the canonical JSON of everything stored; raises ImportRejected on NaN in extra."""
        content = {"phase": self.phase, "phase_raw": self.phase_raw, "box": list(self.box),
                   "texts": self.texts, "extra": self.extra}
        try:
            canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                   allow_nan=False)
        except ValueError as exc:
            raise ImportRejected("keys outside the Go Zone hold NaN or Infinity, which cannot be stored") \
                from exc
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def expand_json_paths(sources: list[Path]) -> Iterator[tuple[Path, Path]]:
    """(import root, JSON file) for every source file and every *.json under every source folder, sorted."""
    for source in sources:
        if source.is_dir():
            for path in sorted(source.rglob("*.json")):
                if path.is_file():
                    yield source, path
        else:
            yield source.parent, source


def read_labelme(path: Path) -> dict[str, Any]:
    """The parsed JSON object of ``path``, its required keys checked; ImportRejected says what is wrong."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ImportRejected(f"the JSON file is {size:,} bytes; the limit is {MAX_JSON_BYTES:,}")
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise ImportRejected(f"no such file: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRejected(f"cannot read the JSON file ({exc})") from exc
    except RecursionError as exc:
        raise ImportRejected("not usable JSON: it is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, over-long integers
        raise ImportRejected(f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ImportRejected(f"a LabelMe file is a JSON object, this one is a {type(doc).__name__}")
    missing = [k for k in ("shapes", "imageHeight", "imageWidth") if k not in doc]
    if doc.get("imageData") is None and "imagePath" not in doc:
        missing.append("imagePath")
    if missing:
        raise ImportRejected(f"missing key(s) {', '.join(missing)}")
    if not isinstance(doc["shapes"], list):
        raise ImportRejected("shapes must be a list")
    for key in ("imageHeight", "imageWidth"):
        if isinstance(doc[key], bool) or not isinstance(doc[key], int) or doc[key] <= 0:
            raise ImportRejected(f"{key} must be a positive whole number, got {doc[key]!r}")
    for key in ("imagePath", "imageData"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ImportRejected(f"{key} must be a string or null, got {type(doc[key]).__name__}")
    return doc


def safe_image_path(raw: str, root: Path, json_dir: Path) -> Path:
    """LabelMe's imagePath ``raw`` resolved against ``json_dir``; rejected unless it stays inside ``root``.

    Nothing is read here: an unsafe path is refused before any file access.
    """
    posix = raw.replace("\\", "/")
    if not posix or "\x00" in posix:
        raise ImportRejected(f"imagePath {raw!r} is not a usable file name")
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(raw).drive or PureWindowsPath(raw).root:
        raise ImportRejected(f"imagePath {raw!r} is absolute; it must be relative to the JSON file")
    resolved = (json_dir / posix).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ImportRejected(f"imagePath {raw!r} points outside the import folder {root}")
    return resolved


def load_image(store: FrameStore, doc: dict[str, Any], root: Path,
               json_path: Path) -> tuple[ValidatedImage, Path]:
    """(validated image, the path it is named by) from the file at imagePath, else from imageData."""
    raw_path, data = doc.get("imagePath"), doc.get("imageData")
    image_path = safe_image_path(raw_path, root, json_path.parent) if raw_path else None
    try:
        if image_path is not None and image_path.is_file():
            return store.validate_file(image_path), image_path
    except OSError as exc:
        raise ImportRejected(f"cannot read the image {raw_path!r} ({exc})") from exc
    if data is None:
        raise ImportRejected(f"image file {raw_path!r} not found beside the JSON "
                             "and no imageData is embedded")
    try:
        decoded = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImportRejected(f"imageData is not valid base64 ({exc})") from exc
    return store.validate(decoded), image_path or json_path.resolve()


def go_zone_shape(shapes: list[Any]) -> dict[str, Any]:
    """The single rectangle of ``shapes``; any other shape, or not exactly one rectangle, is rejected."""
    for shape in shapes:
        if not isinstance(shape, dict):
            raise ImportRejected(f"every shape must be a JSON object, got {type(shape).__name__}")
        kind = shape.get("shape_type", "polygon")  # LabelMe's own default when the key is absent
        if kind != "rectangle":
            raise ImportRejected(f"shape {kind!r} is not a rectangle; a Go Zone is a rectangle")
    if len(shapes) != 1:
        raise ImportRejected(f"found {len(shapes)} rectangles; a LabelMe Go Zone file holds exactly one")
    return shapes[0]


def shape_box(shape: dict[str, Any], width: int, height: int,
              warnings: list[str]) -> tuple[float, float, float, float]:
    """The canonical box of a rectangle's ``points`` in a ``width`` x ``height`` frame; clipping is warned."""
    points = shape.get("points")
    if not (isinstance(points, list) and len(points) == 2
            and all(isinstance(p, list) and len(p) == 2 for p in points)):
        raise ImportRejected(f"rectangle points must be [[x1, y1], [x2, y2]], got {points!r}")
    try:
        fitted = labelme_to_canonical(points, width, height)
    except (BoxError, OverflowError) as exc:  # OverflowError: an integer too large for a float
        raise ImportRejected(f"Go Zone box rejected: {exc}") from exc
    if fitted.clipped:
        warnings.append(f"box {points!r} reaches outside the {width}x{height} frame; "
                        f"clipped to {list(fitted.box.as_tuple())}")
    return fitted.box.as_tuple()


def phase_from(flags: Any, label: Any,
               vocab: vocabularies.Vocabulary | None = None) -> tuple[str | None, str | None]:
    """(phase id of ``vocab``, raw string) from the flags set true, else from the rectangle label; conflicts
    rejected. ``vocab`` defaults to ResGo's A-D."""
    vocab = vocab or vocabularies.load("resgo")
    if not isinstance(flags, dict):
        raise ImportRejected(f"flags must be an object of true/false values, got {type(flags).__name__}")
    if label is not None and not isinstance(label, str):
        raise ImportRejected(f"the rectangle label must be a string, got {type(label).__name__}")
    named = {}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ImportRejected(f"flag {key!r} must be true or false, got {value!r}")
        if value and (phase := vocab.normalize_phase(key)) is not None:
            named.setdefault(phase, key)
    if len(named) > 1:
        raise ImportRejected(f"flags name conflicting phases: {', '.join(repr(k) for k in named.values())}")
    label_phase = vocab.normalize_phase(_GO_ZONE_PREFIX.sub("", label)) if label else None
    if named:
        (phase, raw), = named.items()
        if label_phase is not None and label_phase != phase:
            raise ImportRejected(f"flag {raw!r} names phase {phase} "
                                 f"but the label {label!r} names {label_phase}")
        return phase, raw
    return (label_phase, label) if label_phase is not None else (None, None)


def rationale_texts(doc: dict[str, Any], shape: dict[str, Any]) -> dict[str, str | None]:
    """The four rationale parts from top-level keys; the rectangle's description stands in for location."""
    texts: dict[str, str | None] = {}
    for key in RATIONALE_KEYS:
        value = doc.get(key)
        if key == "location" and value in (None, ""):
            value = shape.get("description")
        if value is not None and not isinstance(value, str):
            raise ImportRejected(f"{key} must be a string, got {type(value).__name__}")
        if value is not None and len(value) > MAX_TEXT_CHARS:
            raise ImportRejected(f"{key} is {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}")
        texts[key] = storable(value) if value and value.strip() else None
    return texts


def storable_json(value: Any) -> Any:
    """``value`` (parsed JSON) with NUL and lone surrogates replaced in every string, keys included, so every
    database can keep it; ImportRejected when it is nested too deeply to walk."""
    try:
        if isinstance(value, str):
            return storable(value)
        if isinstance(value, list):
            return [storable_json(v) for v in value]
        if isinstance(value, dict):
            return {storable(k): storable_json(v) for k, v in value.items()}
    except RecursionError as exc:
        raise ImportRejected("keys outside the Go Zone are nested too deeply to store") from exc
    return value


def parse_go_zone(doc: dict[str, Any], width: int, height: int,
                  vocab: vocabularies.Vocabulary | None = None) -> GoZoneLabel:
    """A checked LabelMe object of a ``width`` x ``height`` image -> the label to store (with warnings).

    Phases are read in ``vocab`` (default ResGo A-D)."""
    if (doc["imageWidth"], doc["imageHeight"]) != (width, height):
        declared = f"{doc['imageWidth']}x{doc['imageHeight']}"
        raise ImportRejected(f"imageWidth x imageHeight in the JSON is {declared} "
                             f"but the image is {width}x{height}")
    shape = go_zone_shape(doc["shapes"])
    warnings: list[str] = []
    box = shape_box(shape, width, height, warnings)
    flags = doc.get("flags")
    phase, phase_raw = phase_from({} if flags is None else flags, shape.get("label"), vocab)
    if phase is None:
        warnings.append("no phase in flags or label; the label is stored without a phase")
    extra = storable_json({"top": {k: v for k, v in doc.items() if k not in MODELED_TOP_KEYS},
                           "shape": {k: v for k, v in shape.items() if k not in MODELED_SHAPE_KEYS}})
    return GoZoneLabel(phase, phase_raw, box, rationale_texts(doc, shape), extra, warnings)


def store_label(session: Session, case: Case, source: str, parsed: GoZoneLabel) -> str:
    """Write ``parsed`` as the current label of ``case`` from ``source``.

    Returns "new", "updated" (changed content, same row) or "same" (unchanged; nothing written).
    """
    digest = parsed.content_sha256
    label = session.scalar(select(Label).where(Label.case_id == case.id, Label.source == source))
    if label is not None and label.content_sha256 == digest:
        return "same"
    # Demote first: the partial unique index allows one current label per case at any moment.
    session.execute(update(Label).where(Label.case_id == case.id, Label.is_current,
                                        *([Label.id != label.id] if label is not None else []))
                    .values(is_current=False))
    outcome = "updated" if label is not None else "new"
    if label is None:
        label = Label(case_id=case.id, source=source)
        session.add(label)
    label.is_current = True
    label.phase, label.phase_raw, label.box = parsed.phase, parsed.phase_raw, parsed.box
    label.extra = parsed.extra
    for key, value in parsed.texts.items():
        setattr(label, key, value)
    label.content_sha256 = digest
    session.flush()
    return outcome


def _import_one(session: Session, store: FrameStore, root: Path, json_path: Path, meta: CaseMeta,
                name: str) -> tuple[str, list[str]]:
    """One LabelMe file -> ("new" | "updated" | "same", warnings). Raises ImportRejected."""
    doc = read_labelme(json_path)
    image, image_path = load_image(store, doc, root, json_path)
    # The Go Zone phases of the procedure, as the annotation editor and the LabelMe export read them (ResGo
    # A-D for cholecystectomy); gozone_vocabulary looks only at .procedure and .dataset, which CaseMeta has.
    parsed = parse_go_zone(doc, image.width, image.height, gozone_vocabulary(meta))
    root_resolved = root.resolve()
    relative = image_path.relative_to(root_resolved) if image_path.is_relative_to(root_resolved) else \
        Path(image_path.name)
    video, index = position_from_path(root_resolved, image_path)
    case, _ = add_case(session, store, image, meta.with_position(video, index),
                       fallback_key=relative.with_suffix("").as_posix(), source_name=name)
    if case.frame.sha256 != image.sha256:
        raise ImportRejected(f"case {case.key} already holds a different image than {relative.as_posix()}")
    outcome = store_label(session, case, f"labelme:{name}", parsed)
    return outcome, parsed.warnings


def import_labelme(session: Session, store: FrameStore, sources: list[Path], meta: CaseMeta, *,
                   actor: str = "system") -> ImportSummary:
    """Import LabelMe Go Zone files (files, or folders walked for *.json) as cases with current labels.

    Returns the summary: new or changed labels imported, unchanged files as duplicates, bad files rejected.
    """
    summary = ImportSummary("labelme")
    for root, path in expand_json_paths([Path(s) for s in sources]):
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        with item_scope(session, store, summary, name):
            outcome, warnings = _import_one(session, store, root, path, meta, name)
            if outcome == "same":
                summary.duplicates.append(name)
                continue
            summary.imported.append(name)
            if outcome == "updated":
                warnings = [*warnings, "updated: the label of this file changed since its last import"]
            summary.warnings += [(name, f"{name}: {message}") for message in warnings]
    audit.record(session, "import.labelme", actor_label=actor,
                 payload={"sources": [str(s) for s in sources], "dataset": meta.dataset, **summary.counts})
    return summary
