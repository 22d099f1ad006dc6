"""Training and benchmark data from reference labels: Go Zone SFT, GRPO prompts, a ResGo-style benchmark.

A label counts when it is its case's current label; with ``approved_only`` only labels whose source starts
with "annotation:" (what approving a Go Zone annotation creates). SFT rows are the two-turn phase-then-go
conversation of the inference prompt templates: turn 1 the phase multiple choice answered with the reference
letter, turn 2 (the reference phase's Go Zone definition inserted, as training corrects a wrong turn 1) the
four rationale parts and the box, in the target family's convention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.bundles import BundleResult, ExportFilters, case_query, finish_bundle, open_bundle, paused_gc
from db.errors import DomainError
from db.frames import FrameStore
from db.schema import Case, Frame, Label
from db.users import Actor, By, require
from models.boxes import Box
from models.chat_formats import (
    TARGETS,
    box_answer,
    gozone_targets,
    sft_file_names,
    sharegpt_row,
    target_box,
    task_conversation,
    trl_messages_row,
    trl_prompt_row,
)
from models.parsing import RATIONALE_PARTS
from models.prompts import PromptContext, template_for
from models.vocabularies import load, vocabulary_for

LABEL_KINDS = ("sft", "grpo", "benchmark")
GRPO_TASKS = ("gozone", "phase", "triplet", "cvs", "action")
CVS_CRITERIA = ("C1", "C2", "C3")


@dataclass(frozen=True)
class LabelledCase:
    """A case's current label with what rows need."""

    case: Case
    label: Label
    frame: Frame

    def rationale(self) -> dict[str, str | None]:
        return {part: getattr(self.label, part) for part in RATIONALE_PARTS}

    def gozone_phase(self) -> str | None:
        """The label's phase as a ResGo id (A-D), or None."""
        return load("resgo").normalize_phase(self.label.phase)


def labelled_cases(session: Session, filters: ExportFilters) -> list[LabelledCase]:
    """Current labels of the cases ``filters`` admits, label dates in [since, until), by case key."""
    query = (
        select(Case, Label, Frame)
        .join(Label, Label.case_id == Case.id)
        .join(Frame, Frame.id == Case.frame_id)
        .where(Label.is_current, Case.id.in_(case_query(filters)))
        .order_by(Case.key)
    )
    if filters.since is not None:
        query = query.where(Label.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Label.created_at < filters.until)
    return [LabelledCase(case, label, frame) for case, label, frame in session.execute(query)]


# --- pure row builders ----------------------------------------------------------------------------------


def gozone_conversation(item: LabelledCase, target: str) -> list[dict[str, Any]] | None:
    """The two-turn SFT conversation of a labelled case, or None without a ResGo phase or a box."""
    phase, box = item.gozone_phase(), item.label.box
    if phase is None or box is None:
        return None
    coded = target_box(Box(*box), item.frame.width, item.frame.height, target)
    turns = gozone_targets(phase, item.rationale(), coded)
    return task_conversation("gozone", load("resgo"), list(turns), phase_id=phase)


def triplet_strings(triplets: Any) -> list[str] | None:
    """Reference triplets as "instrument verb target" strings (from lists, dicts or strings), or None."""
    if not triplets:
        return None
    out = []
    for t in triplets:
        if isinstance(t, dict):
            t = [t.get("instrument"), t.get("verb"), t.get("target")]
        out.append(" ".join(str(v) for v in t) if isinstance(t, list | tuple) else str(t))
    return out


def cvs_values(cvs: Any) -> dict[str, bool | None] | None:
    """C1-C3 as booleans (annotator averages of 0.5 and above read as achieved), or None."""
    if not cvs:
        return None
    found = {str(k).upper(): v for k, v in cvs.items()}
    return {
        c: (bool(found[c]) if isinstance(found[c], bool) else float(found[c]) >= 0.5)
        if isinstance(found.get(c), int | float | bool)
        else None
        for c in CVS_CRITERIA
    }


def grpo_row(
    item: LabelledCase, task: str, target: str, image_of: Callable[[Frame], str]
) -> dict[str, Any] | None:
    """A GRPO prompt row with ``solution`` and the reward columns (phase, box, triplet, cvs), or None when
    the label lacks what ``task`` needs. The Go Zone prompt is turn 2 after the reference phase."""
    label, frame = item.label, item.frame
    box = target_box(Box(*label.box), frame.width, frame.height, target) if label.box else None
    vocabulary = vocabulary_for(task, item.case.dataset, item.case.procedure)
    phase = item.gozone_phase() if task == "gozone" else vocabulary.normalize_phase(label.phase)
    triplets, cvs = triplet_strings(label.triplets), cvs_values(label.cvs)
    if task == "gozone":
        if phase is None or box is None:
            return None
        first, _ = gozone_targets(phase, {}, box)
        prompt = template_for("gozone").second_turn(
            task_conversation("gozone", vocabulary, []), first, phase, PromptContext(vocabulary=vocabulary)
        )
        solution = box_answer([box])
    else:
        solution = _solution(task, label, vocabulary, phase, triplets, cvs)
        if solution is None:
            return None
        prompt = task_conversation(task, vocabulary, [])
    return trl_prompt_row(
        prompt, [image_of(item.frame)], solution=solution, phase=phase, box=box, triplet=triplets, cvs=cvs
    )


def _solution(
    task: str,
    label: Label,
    vocabulary,
    phase: str | None,
    triplets: list[str] | None,  # noqa: ANN001
    cvs: dict[str, bool | None] | None,
) -> str | None:
    if task == "phase":
        return vocabulary.phase(phase).name if phase is not None else None
    if task == "triplet":
        return "; ".join(triplets) if triplets else None
    if task == "cvs":
        if not cvs or any(v is None for v in cvs.values()):
            return None
        return "; ".join(f"{c}: {'yes' if v else 'no'}" for c, v in cvs.items())
    return label.action or None


def benchmark_sample(item: LabelledCase, image: str) -> dict[str, Any]:
    """One ResGo-style sample: image, phase (id and name), box (original pixels), the four texts, split."""
    phase = item.gozone_phase()
    return {
        "id": item.case.key,
        "image": image,
        "width": item.frame.width,
        "height": item.frame.height,
        "phase": phase or item.label.phase,
        "phase_name": load("resgo").phase(phase).name if phase else None,
        "box": list(item.label.box) if item.label.box else None,
        **item.rationale(),
        "split": item.case.split,
        "dataset": item.case.dataset,
        "source": item.label.source,
    }


# --- the export service -----------------------------------------------------------------------------------


def export_labels(
    session: Session,
    by: By,
    store: FrameStore,
    kind: str,
    target_dir: Path,
    *,
    filters: ExportFilters | None = None,
    target: str | None = None,
    task: str = "gozone",
    overwrite: bool = False,
) -> BundleResult:
    """Write a ``kind`` bundle (sft, grpo, benchmark) from current labels to ``target_dir``. SFT and GRPO
    need ``target`` (qwen25 or qwen3). An Actor must be an admin; a string is a trusted caller (the CLI)."""
    filters = filters or ExportFilters()
    if kind not in LABEL_KINDS:
        raise DomainError(f"Unknown label export {kind!r}; kinds are {', '.join(LABEL_KINDS)}.")
    if kind != "benchmark" and target not in TARGETS:
        raise DomainError(f"A {kind} export needs a target model family: {' or '.join(TARGETS)}.")
    if kind == "grpo" and task not in GRPO_TASKS:
        raise DomainError(f"GRPO tasks are {', '.join(GRPO_TASKS)}.")
    if isinstance(by, Actor):
        require(by, "admin")
    items = labelled_cases(session, filters)
    with paused_gc(), open_bundle(target_dir, store, overwrite=overwrite) as bundle:
        writer = {"sft": _write_sft, "grpo": _write_grpo, "benchmark": _write_benchmark}[kind]
        counts, fmt = writer(bundle, items, target, task)
        newest = max((i.label.created_at for i in items), default=None)
        manifest = bundle.manifest(
            kind,
            fmt,
            filters=filters,
            counts=counts,
            source_as_of=newest,
            extra={"target": target, **({"task": task} if kind == "grpo" else {})},
        )
        actor_id, label = (by.user_id, by.username) if isinstance(by, Actor) else (None, by)
        return finish_bundle(
            session, bundle, manifest, overwrite=overwrite, actor_id=actor_id, actor_label=label
        )


def _write_sft(bundle, items: list[LabelledCase], target: str, task: str) -> tuple[dict, str]:  # noqa: ANN001
    trl, sharegpt, provenance, skipped = [], [], [], {}
    for item in items:
        conversation = gozone_conversation(item, target)
        if conversation is None:
            reason = "no Go Zone box" if item.label.box is None else "no ResGo phase"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        images = [bundle.image(item.frame)]
        trl.append(trl_messages_row(conversation, images))
        sharegpt.append(sharegpt_row(conversation, images))
        provenance.append(_provenance(item))
    write_sft_files(bundle, trl, sharegpt, provenance)
    return {"rows": len(trl), "skipped": dict(sorted(skipped.items()))}, "trl-messages+llamafactory-sharegpt"


def write_sft_files(bundle, trl: list, sharegpt: list, provenance: list, name: str = "sft") -> None:  # noqa: ANN001
    """The SFT files: TRL messages, LLaMA-Factory sharegpt with its dataset_info.json, aligned provenance."""
    trl_file, sharegpt_file, info = sft_file_names(name)
    bundle.write_jsonl(trl_file, trl)
    bundle.write_jsonl(sharegpt_file, sharegpt)
    bundle.write_json("dataset_info.json", info)
    bundle.write_jsonl("provenance.jsonl", provenance)


def _write_grpo(bundle, items: list[LabelledCase], target: str, task: str) -> tuple[dict, str]:  # noqa: ANN001
    rows, provenance, skipped = [], [], 0
    for item in items:
        row = grpo_row(item, task, target, bundle.image)
        if row is None:
            skipped += 1
            continue
        rows.append(row)
        provenance.append(_provenance(item))
    bundle.write_jsonl("grpo.jsonl", rows)
    bundle.write_jsonl("provenance.jsonl", provenance)
    return {
        "rows": len(rows),
        "skipped": {f"label lacks what {task} needs": skipped} if skipped else {},
    }, "trl-grpo"


def _write_benchmark(bundle, items: list[LabelledCase], target: str | None, task: str) -> tuple[dict, str]:  # noqa: ANN001
    samples = [
        benchmark_sample(item, bundle.image(item.frame))
        for item in items
        if item.label.phase is not None or item.label.box is not None
    ]
    bundle.write_json("benchmark.json", samples, records=len(samples))
    splits: dict[str, int] = {}
    for sample in samples:
        splits[str(sample["split"])] = splits.get(str(sample["split"]), 0) + 1
    return {"rows": len(samples), "splits": dict(sorted(splits.items()))}, "resgo-json"


def _provenance(item: LabelledCase) -> dict[str, Any]:
    return {
        "case": item.case.key,
        "label": item.label.id,
        "source": item.label.source,
        "split": item.case.split,
    }
