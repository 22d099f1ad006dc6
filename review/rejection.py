"""Human-verified rejection sampling (Surg-R1 stage 4 done with clinicians).

A model's reasoning trace becomes an SFT row when its answer matches the case's reference label AND its
reviewers rated it correct (the ``PairRules`` majority). Rows are the task's conversation with the inference
prompts and the output re-written in the target family's form: ``<think> Level 1: ... Level 2: ...
Level 3: ... </think><answer>...</answer>``, boxes in the family's convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.bundles import BundleResult, ExportFilters, finish_bundle, open_bundle, paused_gc
from db.errors import DomainError
from db.frames import FrameStore
from db.schema import Case, Label
from db.users import Actor, By, require
from models.boxes import Box, iou
from models.chat_formats import TARGETS, sft_file_names, sharegpt_row, trl_messages_row
from models.parsing.answers import squash
from models.parsing.result import ParsedOutput
from models.vocabularies import load, vocabulary_for
from review.preferences import Output, PairRules, judged_outputs

DEFAULT_MIN_IOU = 0.5


def matches_reference(
    parsed: ParsedOutput, label: Label, output: Output, *, min_iou: float = DEFAULT_MIN_IOU
) -> bool:
    """Whether an output's answer matches the reference: same phase (and a Go Zone / localization box with
    IoU >= ``min_iou``), the same triplet set, the same C1-C3, or the same action, by task."""
    task = output.task
    if task == "gozone":
        resgo = load("resgo")
        return (
            parsed.phase is not None
            and parsed.phase == resgo.normalize_phase(label.phase)
            and _box_matches(parsed, [label.box] if label.box else [], min_iou)
        )
    if task == "phase":
        vocabulary = vocabulary_for(task, output.dataset, output.procedure)
        reference = vocabulary.normalize_phase(label.phase)
        return reference is not None and vocabulary.normalize_phase(parsed.phase) == reference
    if task == "triplet":
        reference = {_triplet_key(t) for t in label.triplets or ()}
        return bool(reference) and {_triplet_key(t) for t in parsed.triplets} == reference
    if task == "cvs":
        reference = {str(k).upper(): v for k, v in (label.cvs or {}).items()}
        keys = ("C1", "C2", "C3")
        return all(k in reference for k in keys) and all(
            parsed.cvs.get(k)
            == (bool(reference[k]) if isinstance(reference[k], bool) else float(reference[k]) >= 0.5)
            for k in keys
        )
    if task == "action":
        return bool(label.action) and squash(parsed.action or "") == squash(label.action)
    if task == "localization":
        return _box_matches(parsed, [b["box"] for b in label.boxes or ()], min_iou)
    return False


def _box_matches(parsed: ParsedOutput, references: list, min_iou: float) -> bool:
    if not parsed.boxes or not references:
        return False
    box = parsed.boxes[0].as_box()
    return max(iou(box, Box(*ref)) for ref in references) >= min_iou


def _triplet_key(triplet: Any) -> str:
    if isinstance(triplet, dict):
        triplet = [triplet.get("instrument"), triplet.get("verb"), triplet.get("target")]
    parts = triplet if isinstance(triplet, list | tuple) else str(triplet).replace(",", " ").split()
    return " ".join(squash(str(p)) for p in parts)


def export_rejection_sampling(
    session: Session,
    by: By,
    store: FrameStore,
    target_dir: Path,
    *,
    filters: ExportFilters | None = None,
    rules: PairRules | None = None,
    target: str = "qwen25",
    min_iou: float = DEFAULT_MIN_IOU,
    overwrite: bool = False,
) -> BundleResult:
    """Write the verified traces of the studies admitted by ``filters`` as SFT files (TRL messages and
    LLaMA-Factory sharegpt) to ``target_dir``. An Actor must be an admin; a string is a trusted caller."""
    filters, rules = filters or ExportFilters(), rules or PairRules()
    if target not in TARGETS:
        raise DomainError(f"Rejection sampling needs a target model family: {' or '.join(TARGETS)}.")
    if isinstance(by, Actor):
        require(by, "admin")
    with paused_gc(), open_bundle(target_dir, store, overwrite=overwrite) as bundle:
        trl, sharegpt, provenance, skipped, seen, newest = [], [], [], {}, set(), None
        for study, judged, outputs, when in judged_outputs(session, filters, rules, levels=False):
            labels = _labels(session, judged["case"].unique().tolist())
            correct = judged.loc[judged["label"] == True, ["case", "model"]]  # noqa: E712
            outputs.load(correct.itertuples(index=False, name=None))
            for case, model in correct.itertuples(index=False):
                output = outputs.get((case, model))
                reason = _why_not(output, labels.get(case), seen, min_iou)
                if reason is None:
                    conversation = output.conversation(target)
                    reason = output.unusable(target) if conversation is None else None
                if reason is not None:
                    skipped[reason] = skipped.get(reason, 0) + 1
                    continue
                seen.add(output.prediction_id)
                images = [bundle.image(output.frame)]
                trl.append(trl_messages_row(conversation, images))
                sharegpt.append(sharegpt_row(conversation, images))
                provenance.append(
                    {
                        "study": study.name,
                        "case": case,
                        "model": model,
                        "prediction": output.prediction_id,
                        "label": labels[case].id,
                    }
                )
            newest = when if newest is None or (when and when > newest) else newest
        trl_file, sharegpt_file, info = sft_file_names("rejection")
        bundle.write_jsonl(trl_file, trl)
        bundle.write_jsonl(sharegpt_file, sharegpt)
        bundle.write_json("dataset_info.json", info)
        bundle.write_jsonl("provenance.jsonl", provenance)
        counts = {"rows": len(trl), "skipped": dict(sorted(skipped.items()))}
        manifest = bundle.manifest(
            "rejection",
            "trl-messages+llamafactory-sharegpt",
            filters=filters,
            counts=counts,
            source_as_of=newest,
            extra={"pair_rules": rules.as_dict(), "target": target, "min_iou": min_iou},
        )
        actor_id, label = (by.user_id, by.username) if isinstance(by, Actor) else (None, by)
        return finish_bundle(
            session, bundle, manifest, overwrite=overwrite, actor_id=actor_id, actor_label=label
        )


def _why_not(output: Output | None, label: Label | None, seen: set[int], min_iou: float) -> str | None:
    """Why a correct-rated output is not a row (None: it is one)."""
    if output is None:
        return "output without text"
    if output.prediction_id in seen:
        return "same prediction in another study"
    if label is None:
        return "case without a reference label"
    if not matches_reference(output.parsed_output(), label, output, min_iou=min_iou):
        return "answer differs from the reference"
    return None


def _labels(session: Session, keys: list[str]) -> dict[str, Label]:
    """{case key: current label} for ``keys``."""
    found: dict[str, Label] = {}
    for start in range(0, len(keys), 500):
        rows = session.execute(
            select(Case.key, Label)
            .join(Label, Label.case_id == Case.id)
            .where(Label.is_current, Case.key.in_(keys[start : start + 500]))
        )
        found.update({key: label for key, label in rows})
    return found
