"""One entry point for every training-data export, shared by the CLI and the Export tab."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from annotation.training import LABEL_KINDS, export_labels
from db.bundles import BundleResult, ExportFilters
from db.errors import DomainError
from db.frames import FrameStore
from db.users import By
from review.preferences import PREFERENCE_KINDS, PairRules, export_preferences
from review.rejection import DEFAULT_MIN_IOU, export_rejection_sampling

KINDS = {
    "dpo": "TRL DPO pairs from review studies (chosen: picked best and correct; rejected: incorrect)",
    "kto": "TRL KTO rows from review studies (label: rated correct)",
    "ranking": "LLaMA-Factory ranking (sharegpt) pairs from review studies, with dataset_info.json",
    "process": "Per-level process labels from review studies (JSONL)",
    "sft": "Go Zone SFT from labels: two-turn phase-then-go, TRL messages and sharegpt",
    "grpo": "GRPO prompts from labels with solution, phase, box, triplet and CVS columns",
    "rejection": "Human-verified rejection sampling: traces matching the reference and rated correct",
    "benchmark": "Current labels as ResGo-style benchmark JSON",
}
# Kinds whose rows are written in a target family's form and need --target.
NEEDS_TARGET = frozenset({"sft", "grpo", "rejection"})


@dataclass(frozen=True)
class ExportRequest:
    """What to export, where, and how (filters, pair rules, target family, GRPO task)."""

    kind: str
    out: Path
    filters: ExportFilters = field(default_factory=ExportFilters)
    rules: PairRules = field(default_factory=PairRules)
    target: str | None = None
    task: str = "gozone"
    min_iou: float = DEFAULT_MIN_IOU
    overwrite: bool = False


def run_export(session: Session, by: By, store: FrameStore, request: ExportRequest) -> BundleResult:
    """Write the export ``request`` asks for; DomainError for an unknown kind or a missing target."""
    kind = request.kind
    if kind not in KINDS:
        raise DomainError(f"Unknown export {kind!r}; kinds are {', '.join(KINDS)}.")
    if kind in NEEDS_TARGET and request.target is None:
        raise DomainError(f"A {kind} export needs a target model family (qwen25 or qwen3).")
    if kind in PREFERENCE_KINDS:
        return export_preferences(
            session,
            by,
            store,
            kind,
            request.out,
            filters=request.filters,
            rules=request.rules,
            target=request.target,
            overwrite=request.overwrite,
        )
    if kind == "rejection":
        return export_rejection_sampling(
            session,
            by,
            store,
            request.out,
            filters=request.filters,
            rules=request.rules,
            target=request.target,
            min_iou=request.min_iou,
            overwrite=request.overwrite,
        )
    assert kind in LABEL_KINDS
    return export_labels(
        session,
        by,
        store,
        kind,
        request.out,
        filters=request.filters,
        target=request.target,
        task=request.task,
        overwrite=request.overwrite,
    )
