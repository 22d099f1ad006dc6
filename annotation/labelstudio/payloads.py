"""Pure builders and readers for Label Studio: the Go Zone labeling config, task and prediction payloads,
and an annotation's result read back into a GoZoneDraft. No network and no database here.

Boxes cross the border only through models.boxes' Label Studio codec (percent of the original width and
height); the percent values are always taken relative to the case's own frame size.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from annotation.workflow import TEXT_FIELDS, TEXT_LABELS, GoZoneDraft
from models.boxes import Box, BoxError, canonical_to_labelstudio, fit_box, labelstudio_to_canonical
from models.vocabularies import Phase, Vocabulary

IMAGE_KEY = "image"
CASE_KEY = "case_key"
CASE_ID = "case_id"
BOX_CONTROL = "gozone"
PHASE_CONTROL = "phase"
GO_ZONE_LABEL = "Go Zone"
MIME_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
# A region id of our own, so a prediction's box is recognisable in Label Studio's results.
PREDICTED_BOX_ID = "gozone-prediction"


class UnusableAnnotation(ValueError):
    """A Label Studio annotation that cannot become a version; the message says why."""


def choice_value(phase: Phase) -> str:
    """What the annotator sees and Label Studio stores for a phase: "B - Dissection of Calot's Triangle"."""
    return phase.id if phase.name == phase.id else f"{phase.id} - {phase.name}"


def labeling_config(vocabulary: Vocabulary) -> str:
    """The Label Studio XML for Go Zone correction: one "Go Zone" rectangle on the image, one phase of
    ``vocabulary`` (required), and the four rationale texts."""
    choices = "\n".join(f"    <Choice value={quoteattr(choice_value(p))}/>" for p in vocabulary.phases)
    texts = "\n".join(
        f"  <Header value={quoteattr(TEXT_LABELS[name])}/>\n"
        f'  <TextArea name={quoteattr(name)} toName={quoteattr(IMAGE_KEY)} rows="2" maxSubmissions="1" '
        f'editable="true"/>'
        for name in TEXT_FIELDS
    )
    return (
        "<View>\n"
        f'  <Image name={quoteattr(IMAGE_KEY)} value="${IMAGE_KEY}" zoom="true" zoomControl="true"/>\n'
        f"  <RectangleLabels name={quoteattr(BOX_CONTROL)} toName={quoteattr(IMAGE_KEY)}>\n"
        f'    <Label value={quoteattr(GO_ZONE_LABEL)} maxUsages="1" background="#22c55e"/>\n'
        "  </RectangleLabels>\n"
        f"  <Header value={quoteattr(vocabulary.title)}/>\n"
        f'  <Choices name={quoteattr(PHASE_CONTROL)} toName={quoteattr(IMAGE_KEY)} choice="single-radio" '
        'required="true" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        f"{texts}\n"
        "</View>\n"
    )


def image_data_uri(data: bytes, image_format: str) -> str:
    """The frame's original bytes as a data URI (Label Studio shows it without any file server)."""
    mime = MIME_TYPES.get(image_format.upper(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def task_data(case_key: str, case_id: int, image: bytes, image_format: str) -> dict[str, Any]:
    """A task's data: the image plus our case key (what matching is done by) and id (for people)."""
    return {IMAGE_KEY: image_data_uri(image, image_format), CASE_KEY: case_key, CASE_ID: case_id}


def draft_result(draft: GoZoneDraft, width: int, height: int, vocabulary: Vocabulary) -> list[dict[str, Any]]:
    """Label Studio result regions for ``draft`` on a ``width`` x ``height`` frame: the box in percent, the
    phase as its choice, each non-empty text. A phase outside ``vocabulary`` is left out (it could not be
    shown as a choice)."""
    result: list[dict[str, Any]] = []
    if draft.box is not None:
        x, y, w, h = canonical_to_labelstudio(Box(*draft.box), width, height)
        result.append(
            {
                "id": PREDICTED_BOX_ID,
                "from_name": BOX_CONTROL,
                "to_name": IMAGE_KEY,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": x,
                    "y": y,
                    "width": w,
                    "height": h,
                    "rotation": 0,
                    "rectanglelabels": [GO_ZONE_LABEL],
                },
            }
        )
    phase = _phase_or_none(vocabulary, draft.phase)
    if phase is not None:
        result.append(
            {
                "from_name": PHASE_CONTROL,
                "to_name": IMAGE_KEY,
                "type": "choices",
                "value": {"choices": [choice_value(phase)]},
            }
        )
    for name, text in draft.texts().items():
        if text:
            result.append(
                {"from_name": name, "to_name": IMAGE_KEY, "type": "textarea", "value": {"text": [text]}}
            )
    return result


def prediction_payload(model_name: str, result: list[dict[str, Any]]) -> dict[str, Any]:
    """A Label Studio prediction; ``model_version`` carries the model's name."""
    return {"model_version": model_name, "result": result}


def _phase_or_none(vocabulary: Vocabulary, phase_id: str | None) -> Phase | None:
    if phase_id is None:
        return None
    try:
        return vocabulary.phase(phase_id)
    except KeyError:
        return None


@dataclass(frozen=True)
class ReadAnnotation:
    """An annotation's content as a draft, with what reading it changed or noticed."""

    draft: GoZoneDraft
    warnings: list[str] = field(default_factory=list)


def read_result(
    result: list[dict[str, Any]], width: int, height: int, vocabulary: Vocabulary
) -> ReadAnnotation:
    """The GoZoneDraft an annotation's ``result`` holds, for a ``width`` x ``height`` frame.

    Raises UnusableAnnotation for a missing, non-finite, rotated or wholly outside box, several Go Zone
    boxes, or a phase outside ``vocabulary``. A box partly outside the frame (or with swapped corners) is
    fitted into it and a warning says so; so is a missing phase (the version is then a draft).
    """
    warnings: list[str] = []
    regions = [r for r in result if isinstance(r, dict)]
    box = _read_box([r for r in regions if r.get("from_name") == BOX_CONTROL], width, height, warnings)
    phase = _read_phase([r for r in regions if r.get("from_name") == PHASE_CONTROL], vocabulary)
    if phase is None:
        warnings.append("no phase was chosen; stored as a draft")
    texts = {name: _read_text([r for r in regions if r.get("from_name") == name]) for name in TEXT_FIELDS}
    return ReadAnnotation(GoZoneDraft(phase=phase, box=box, **texts), warnings)


def _read_box(
    regions: list[dict[str, Any]], width: int, height: int, warnings: list[str]
) -> tuple[float, float, float, float]:
    if not regions:
        raise UnusableAnnotation("the annotation has no Go Zone box")
    if len(regions) > 1:
        raise UnusableAnnotation(f"the annotation has {len(regions)} Go Zone boxes; keep one")
    region = regions[0]
    value = region.get("value") or {}
    numbers = [value.get(k) for k in ("x", "y", "width", "height")]
    if not all(_finite(n) for n in numbers):
        raise UnusableAnnotation(
            f"the Go Zone box is not four finite numbers (x, y, width, height = {numbers})"
        )
    if _finite(value.get("rotation")) and abs(float(value["rotation"])) > 1e-6:
        raise UnusableAnnotation(
            f"the Go Zone box is rotated by {value['rotation']} degrees; draw it upright"
        )
    original = (region.get("original_width"), region.get("original_height"))
    if all(_finite(n) for n in original) and tuple(int(n) for n in original) != (width, height):
        warnings.append(
            f"Label Studio saw the image as {original[0]}x{original[1]}, the frame is "
            f"{width}x{height}; the box was taken in percent of the frame"
        )
    corners = labelstudio_to_canonical(*(float(n) for n in numbers), width, height)
    try:
        fitted = fit_box(*corners, width, height)
    except BoxError as exc:
        raise UnusableAnnotation(f"the Go Zone box cannot be used: {exc}") from exc
    if fitted.clipped:
        warnings.append(f"the Go Zone box reached outside the {width}x{height} frame and was clipped to it")
    if fitted.swapped:
        warnings.append("the Go Zone box had a negative width or height; its corners were put in order")
    return fitted.box.as_tuple()


def _read_phase(regions: list[dict[str, Any]], vocabulary: Vocabulary) -> str | None:
    chosen = [c for r in regions for c in ((r.get("value") or {}).get("choices") or [])]
    if not chosen:
        return None
    if len(chosen) > 1:
        raise UnusableAnnotation(
            f"the annotation chose {len(chosen)} phases ({', '.join(map(str, chosen))}); choose one"
        )
    raw = str(chosen[0])
    by_value = {choice_value(p): p.id for p in vocabulary.phases}
    phase = by_value.get(raw) or vocabulary.normalize_phase(raw)
    if phase is None:
        known = ", ".join(p.id for p in vocabulary.phases)
        raise UnusableAnnotation(f"phase {raw[:80]!r} is not in the {vocabulary.title} vocabulary ({known})")
    return phase


def _read_text(regions: list[dict[str, Any]]) -> str | None:
    parts = [str(t) for r in regions for t in ((r.get("value") or {}).get("text") or []) if t is not None]
    text = "\n".join(parts).strip()
    return text or None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
