"""Preference and process-label data from review studies: pair rules, votes, and TRL / LLaMA-Factory rows.

An *output* is one model's prediction for one case; its reviewers vote on its correctness (0/1), on whether it
is the best of its item, and on each reasoning level ("correct", "wrong", "na"). ``PairRules`` turn votes into
verdicts:

- an output needs at least ``min_reviewers`` reviewers (for a level: those who marked it correct or wrong);
- majority: more than half the votes. ``ties="keep"`` keeps a 50/50 vote instead of dropping it: a tie on
  correctness or on a level counts as incorrect / wrong (any doubt is an error, as in the 0/1 accuracy
  rating), a tie on the best pick counts as picked;
- ``disagreements="drop"`` keeps only unanimous votes (the majority decides otherwise);
- chosen = picked best and rated correct; rejected = rated incorrect. Every chosen output of a case is paired
  with every rejected output of that case.

Modules: ``votes`` (rules, votes, verdicts, pairs), ``pairs`` (the pairs as the database decides them from
the vote tallies, for DPO exports), ``outputs`` (the judged predictions), ``rows`` (the training rows); this
one holds the export service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from db.bundles import (
    Bundle,
    BundleResult,
    ExportFilters,
    find_study_ids,
    finish_bundle,
    open_bundle,
    paused_gc,
)
from db.errors import DomainError
from db.frames import FrameStore
from db.schema import Study
from db.users import Actor, By, require
from models.chat_formats import dataset_info_entry
from review.preferences.outputs import FrameFile, Output, StudyOutputs, render_turns, study_outputs
from review.preferences.pairs import TalliedPairs, tallied_pairs
from review.preferences.rows import (
    DataRow,
    ImageOf,
    Rows,
    common_prompt,
    dpo_rows,
    kto_rows,
    process_rows,
    tallied_dpo_rows,
)
from review.preferences.votes import (
    LEVELS,
    VOTE_COLUMNS,
    PairRules,
    output_votes,
    preference_pairs,
    study_votes,
    verdicts,
    vote_ratings,
    votes_frame,
)

__all__ = [
    "FILES",
    "FORMATS",
    "LEVELS",
    "PREFERENCE_KINDS",
    "VOTE_COLUMNS",
    "FrameFile",
    "Output",
    "PairRules",
    "Rows",
    "StudyOutputs",
    "TalliedPairs",
    "common_prompt",
    "dpo_rows",
    "export_preferences",
    "judged_outputs",
    "kto_rows",
    "output_votes",
    "preference_pairs",
    "process_rows",
    "render_turns",
    "study_outputs",
    "tallied_pairs",
    "verdicts",
    "vote_ratings",
]

PREFERENCE_KINDS = ("dpo", "kto", "ranking", "process")
FILES = {"dpo": "dpo.jsonl", "kto": "kto.jsonl", "ranking": "ranking.jsonl", "process": "process.jsonl"}
FORMATS = {
    "dpo": "trl-dpo",
    "kto": "trl-kto",
    "ranking": "llamafactory-sharegpt-ranking",
    "process": "process-labels",
}


def judged_outputs(
    session: Session, filters: ExportFilters, rules: PairRules, *, levels: bool = True
) -> Iterator[tuple[Study, pd.DataFrame, StudyOutputs, Any]]:
    """Per study admitted by ``filters``: (study, verdicts, its judged outputs, newest judgment time). The
    verdicts carry each output's ``prediction`` id; per-level verdicts only with ``levels``."""
    for study_id in find_study_ids(session, filters):
        study = session.get(Study, study_id)
        votes = study_votes(session, study_id, filters, levels=levels)
        if not len(votes):
            continue
        outputs = study_outputs(session, study, votes)
        frame = votes_frame(
            votes.counts,
            *outputs.labels(votes.predictions),
            predictions=votes.predictions,
            columns=votes.columns,
        )
        yield study, verdicts(frame, rules), outputs, votes.newest


def export_preferences(
    session: Session,
    by: By,
    store: FrameStore,
    kind: str,
    target_dir: Path,
    *,
    filters: ExportFilters | None = None,
    rules: PairRules | None = None,
    target: str | None = None,
    overwrite: bool = False,
) -> BundleResult:
    """Write a ``kind`` (dpo, kto, ranking, process) bundle to ``target_dir`` from the studies' current
    judgments. ``target`` (qwen25, qwen3) re-renders completions in that family's form; None keeps each
    model's raw text. An Actor must be an admin; a string is a trusted caller (the CLI)."""
    filters, rules = filters or ExportFilters(), rules or PairRules()
    if kind not in PREFERENCE_KINDS:
        raise DomainError(f"Unknown preference export {kind!r}; kinds are {', '.join(PREFERENCE_KINDS)}.")
    if isinstance(by, Actor):
        require(by, "admin")
    with paused_gc(), open_bundle(target_dir, store, overwrite=overwrite) as bundle:
        # What the rows need lives in _write_bundle's frame only: it is freed before the collector runs again.
        manifest = _write_bundle(session, bundle, kind, filters, rules, target)
        actor_id, label = (by.user_id, by.username) if isinstance(by, Actor) else (None, by)
        return finish_bundle(
            session, bundle, manifest, overwrite=overwrite, actor_id=actor_id, actor_label=label
        )


def _write_bundle(
    session: Session, bundle: Bundle, kind: str, filters: ExportFilters, rules: PairRules, target: str | None
) -> dict[str, Any]:
    """Write the data files of a preference export into ``bundle``; returns its manifest."""
    report = _Report()
    bundle.write_jsonl(FILES[kind], report.data_rows(session, bundle, kind, filters, rules, target))
    bundle.write_jsonl("provenance.jsonl", report.rows.provenance)
    if kind == "ranking":
        bundle.write_json(
            "dataset_info.json", {"surgreview_ranking": dataset_info_entry(FILES[kind], ranking=True)}
        )
    counts = {"rows": len(report.rows.provenance), "skipped": dict(sorted(report.rows.skipped.items()))}
    return bundle.manifest(
        kind,
        FORMATS[kind],
        filters=filters,
        counts={**counts, **report.counts},
        source_as_of=report.newest,
        extra={"pair_rules": rules.as_dict(), "target": target, "studies": report.studies},
    )


class _Report:
    """The data rows of every study, yielded as they are built, and what the manifest says of them."""

    def __init__(self) -> None:
        self.rows = Rows()  # provenance (one per data row) and skips, over all studies
        self.counts: dict[str, dict[str, int]] = {}
        self.studies: list[str] = []
        self.newest: Any = None

    def data_rows(
        self,
        session: Session,
        bundle: Bundle,
        kind: str,
        filters: ExportFilters,
        rules: PairRules,
        target: str | None,
    ) -> Iterator[DataRow]:
        if kind == "dpo" and target is None and not filters.dated:
            # The common export: the database decides the pairs from the tallies.
            for study_id in find_study_ids(session, filters):
                study = session.get(Study, study_id)
                tallied = tallied_pairs(session, study_id, filters, rules)
                if not tallied.counts["outputs"]:
                    continue
                before = len(self.rows.provenance)
                yield from tallied_dpo_rows(session, study, tallied, bundle.image, self.rows)
                self._add(study, {**tallied.counts, "rows": len(self.rows.provenance) - before}, tallied.newest)
            return
        for study, judged, outputs, newest in judged_outputs(session, filters, rules, levels=kind == "process"):
            before = len(self.rows.provenance)
            yield from _rows_of(kind, judged, outputs, bundle.image, target, self.rows)
            self._add(study, _study_counts(judged, len(self.rows.provenance) - before), newest)

    def _add(self, study: Study, counts: dict[str, int], newest: Any) -> None:
        self.studies.append(study.name)
        self.counts[f"study:{study.name}"] = counts
        if self.newest is None or (newest and newest > self.newest):
            self.newest = newest


def _rows_of(
    kind: str, judged: pd.DataFrame, outputs: StudyOutputs, image_of: ImageOf, target: str | None, rows: Rows
) -> Iterator[DataRow]:
    if kind == "dpo":
        return dpo_rows(judged, outputs, image_of, target, rows)
    if kind == "ranking":
        return dpo_rows(judged, outputs, image_of, target, rows, ranking=True)
    if kind == "kto":
        return kto_rows(judged, outputs, image_of, target, rows)
    return process_rows(judged, outputs, image_of, rows)


def _study_counts(judged: pd.DataFrame, rows: int) -> dict[str, int]:
    return {
        "outputs": len(judged),
        "chosen": int(judged["chosen"].sum()),
        "rejected": int(judged["rejected"].sum()),
        "correct": int(judged["label"].fillna(False).sum()),
        "incorrect": int((~judged["label"].fillna(True)).sum()),
        "rows": rows,
    }
