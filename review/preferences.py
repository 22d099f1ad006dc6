"""Preference and process-label data from review studies: pair rules, votes, and TRL / LLaMA-Factory rows.

The votes are pure functions over the ``ratings`` frame of ``review.stats`` (read by
``review.results.load_ratings``): one row per rated output of a current judgment. An *output* is one model's
prediction for one case; its reviewers vote on its correctness (0/1), on whether it is the best of its item,
and on each reasoning level ("correct", "wrong", "na"). ``PairRules`` turn votes into verdicts:

- an output needs at least ``min_reviewers`` reviewers (for a level: those who marked it correct or wrong);
- majority: more than half the votes. ``ties="keep"`` keeps a 50/50 vote instead of dropping it: a tie on
  correctness or on a level counts as incorrect / wrong (any doubt is an error, as in the 0/1 accuracy
  rating), a tie on the best pick counts as picked;
- ``disagreements="drop"`` keeps only unanimous votes (the majority decides otherwise);
- chosen = picked best and rated correct; rejected = rated incorrect. Every chosen output of a case is paired
  with every rejected output of that case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import Text, and_, select, type_coerce
from sqlalchemy.orm import Session

from db.bundles import (
    BundleResult,
    ExportFilters,
    case_query,
    find_study_ids,
    finish_bundle,
    open_bundle,
    paused_gc,
)
from db.errors import DomainError
from db.frames import FrameStore
from db.schema import Case, Frame, Judgment, Model, OutputRating, Prediction, ReviewItem, Study, StudyModel
from db.users import Actor, By, require
from models.chat_formats import (
    Message,
    box_answer,
    dataset_info_entry,
    gozone_targets,
    level_target,
    raw_turns,
    sharegpt_ranking_row,
    target_box,
    task_conversation,
    trl_dpo_row,
    trl_kto_row,
)
from models.parsing.result import ParsedOutput
from models.vocabularies import vocabulary_for
from review.access import prediction_models, study_models

LEVELS = (1, 2, 3)
PREFERENCE_KINDS = ("dpo", "kto", "ranking", "process")


@dataclass(frozen=True)
class PairRules:
    """How reviewers' votes become chosen, rejected, correct and per-level labels (see the module doc)."""

    min_reviewers: int = 2
    ties: str = "drop"
    disagreements: str = "keep"

    def __post_init__(self) -> None:
        if self.min_reviewers < 1:
            raise DomainError("The minimum number of reviewers is at least 1.")
        if self.ties not in ("drop", "keep") or self.disagreements not in ("drop", "keep"):
            raise DomainError("Ties and disagreements are either 'drop' or 'keep'.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- votes and verdicts (pure) ------------------------------------------------------------------------------


def output_votes(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per output (case, model): reviewers, correct votes, best votes, and per level the correct and wrong
    marks (``level1_correct``, ``level1_wrong``, ...). Sorted by case and model."""
    frame = ratings.assign(
        _correct=ratings["correct"].astype(int), _best=ratings["best"].astype(bool).astype(int)
    )
    for n in LEVELS:
        marks = frame[f"level{n}"]
        frame[f"level{n}_correct"] = (marks == "correct").astype(int)
        frame[f"level{n}_wrong"] = (marks == "wrong").astype(int)
    level_cols = [f"level{n}_{m}" for n in LEVELS for m in ("correct", "wrong")]
    grouped = frame.groupby(["case", "model"], sort=True)
    votes = grouped[["_correct", "_best", *level_cols]].sum()
    votes.insert(0, "reviewers", grouped.size())
    votes = votes.rename(columns={"_correct": "correct_votes", "_best": "best_votes"})
    return votes.reset_index()


def _holds(yes: np.ndarray, total: np.ndarray, rules: PairRules, *, tie_holds: bool) -> np.ndarray:
    """Whether a property with ``yes`` of ``total`` votes holds (NaN-free bools) under ``rules``."""
    no = total - yes
    # Unanimity: every vote on one side; otherwise the majority decides.
    decided = (yes == 0) | (no == 0) if rules.disagreements == "drop" else np.ones_like(yes, dtype=bool)
    majority = 2 * yes > total
    tie = 2 * yes == total
    if rules.ties == "keep" and tie_holds:
        majority = majority | tie
    return decided & majority & (total >= rules.min_reviewers)


def verdicts(votes: pd.DataFrame, rules: PairRules) -> pd.DataFrame:
    """``votes`` with verdicts: ``label`` (True correct, False incorrect, NA undecided), ``chosen``,
    ``rejected``, and per level ``level{n}_label`` (True correct, False wrong, NA undecided)."""
    out = votes.copy()
    total, correct = out["reviewers"].to_numpy(), out["correct_votes"].to_numpy()
    is_correct = _holds(correct, total, rules, tie_holds=False)
    is_wrong = _holds(total - correct, total, rules, tie_holds=True)
    out["label"] = pd.array(np.where(is_correct, True, np.where(is_wrong, False, None)), dtype="boolean")
    best = _holds(out["best_votes"].to_numpy(), total, rules, tie_holds=True)
    out["chosen"] = best & is_correct
    out["rejected"] = is_wrong
    for n in LEVELS:
        right, wrong = out[f"level{n}_correct"].to_numpy(), out[f"level{n}_wrong"].to_numpy()
        marked = right + wrong
        good = _holds(right, marked, rules, tie_holds=False)
        bad = _holds(wrong, marked, rules, tie_holds=True)
        out[f"level{n}_label"] = pd.array(np.where(good, True, np.where(bad, False, None)), dtype="boolean")
    return out


def preference_pairs(judged: pd.DataFrame) -> pd.DataFrame:
    """(case, chosen, rejected) model pairs from ``verdicts``: every chosen output of a case with every
    rejected output of it, sorted."""
    chosen = judged.loc[judged["chosen"], ["case", "model"]].rename(columns={"model": "chosen"})
    rejected = judged.loc[judged["rejected"], ["case", "model"]].rename(columns={"model": "rejected"})
    pairs = chosen.merge(rejected, on="case")
    return pairs[pairs["chosen"] != pairs["rejected"]].sort_values(
        ["case", "chosen", "rejected"], ignore_index=True
    )


def common_prompt(a: list[Message], b: list[Message]) -> int:
    """How many leading messages two conversations share, cut back so the shared part ends with a user turn
    (the prompt of a preference row)."""
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    while shared > 0 and a[shared - 1]["role"] != "user":
        shared -= 1
    return shared


# --- outputs from the database ----------------------------------------------------------------------------


@dataclass
class Output:
    """One model's prediction for one case of a study, with what rows need: the conversation and frame."""

    study: str
    task: str
    case: str
    model: str
    prediction_id: int
    raw: str | None
    parsed_json: Any  # the parsed column as read: JSON text (SQLite) or a dict (PostgreSQL); decoded on use
    phase: str | None  # the phase the parser read (turn 1 of phase-then-go)
    dataset: str
    procedure: str
    frame: Frame

    def parsed_output(self) -> ParsedOutput:
        return ParsedOutput.from_json(_json(self.parsed_json) or {})

    def conversation(self, target: str | None) -> list[Message] | None:
        """The full conversation (prompt turns and this output's turns), or None when the output has no
        usable text (or, for a ``target``, no renderable answer)."""
        turns = self.turns(target)
        if not turns:
            return None
        vocabulary = vocabulary_for(self.task, self.dataset, self.procedure)
        phase = self.phase if target is None else self.parsed_output().phase
        return task_conversation(self.task, vocabulary, turns, phase_id=phase)

    def unusable(self, target: str | None) -> str:
        """Why ``conversation(target)`` is None, in words for the manifest's skip counts."""
        if not (self.raw or "").strip():
            return "output without text"
        return f"answer cannot be rendered for {target}"

    def turns(self, target: str | None) -> list[str] | None:
        if target is None:
            return raw_turns(self.raw) if self.raw and self.raw.strip() else None
        return render_turns(self.parsed_output(), self.task, self.frame.width, self.frame.height, target)


def render_turns(parsed: ParsedOutput, task: str, width: int, height: int, target: str) -> list[str] | None:
    """An output re-written in ``target``'s form (Level-structured reasoning, boxes in its convention), or
    None when its answer cannot be rendered (no answer; a box task without a box)."""
    if task == "gozone":
        if parsed.phase is None or not parsed.boxes:
            return None
        box = target_box(parsed.boxes[0].as_box(), width, height, target)
        return list(
            gozone_targets(
                parsed.phase,
                parsed.rationale,
                box,
                phase_thinking=parsed.phase_thinking,
                levels=parsed.levels,
                thinking=parsed.thinking,
            )
        )
    if task == "localization":
        if not parsed.boxes:
            return None
        label = parsed.boxes[0].label or "target"
        answer = box_answer([target_box(b.as_box(), width, height, target) for b in parsed.boxes], label)
    else:
        if not (parsed.answer or "").strip():
            return None
        answer = parsed.answer
    return [level_target(parsed.levels, answer, parsed.thinking)]


VOTE_COLUMNS = ["item", "case", "model", "correct", "best", "level1", "level2", "level3"]


def vote_ratings(session: Session, study_id: int) -> tuple[pd.DataFrame, dict[int, Any]]:
    """The ``ratings`` frame of ``review.stats`` restricted to the columns votes use (VOTE_COLUMNS, the same
    values ``review.results.load_ratings`` gives), and {item: time of its current judgment}.

    Read narrower than ``load_ratings``: each item's letter map is decoded once (orjson) instead of once per
    rated output, and no flags, comments or pseudonyms are read; on 100,000 judgments this is most of an
    export's time. A test checks both readers agree."""
    model_of = prediction_models(session, study_id)
    names = {model.id: model.name for _, model in study_models(session, study_id)}
    session.flush()
    core = session.connection()  # Core execution: these rows are tuples, the ORM's row machinery only costs
    items = core.execute(
        select(
            ReviewItem.id,
            Case.key,
            type_coerce(ReviewItem.letter_map, Text),
            Judgment.id,
            Judgment.best_letter,
            Judgment.created_at,
        )
        .join(Judgment, and_(Judgment.item_id == ReviewItem.id, Judgment.is_current))
        .join(Case, Case.id == ReviewItem.case_id)
        .where(ReviewItem.study_id == study_id)
    ).all()
    judgment = {j: (item, key, _json(letters), best) for item, key, letters, j, best, _ in items}
    rows = core.execute(
        select(
            OutputRating.judgment_id,
            OutputRating.letter,
            OutputRating.correct,
            OutputRating.level1,
            OutputRating.level2,
            OutputRating.level3,
        )
        .join(Judgment, Judgment.id == OutputRating.judgment_id)
        .join(ReviewItem, ReviewItem.id == Judgment.item_id)
        .where(ReviewItem.study_id == study_id, Judgment.is_current)
        .order_by(ReviewItem.id, OutputRating.letter)
    )
    records = []
    for j, letter, correct, l1, l2, l3 in rows:
        item, key, letters, best = judgment[j]
        records.append((item, key, names[model_of[letters[letter]]], correct, best == letter, l1, l2, l3))
    return (
        pd.DataFrame.from_records(records, columns=VOTE_COLUMNS),
        {item: when for item, _, _, _, _, when in items},
    )


def _json(value: Any) -> Any:
    """A JSON column read as text (SQLite) or already decoded by the driver (PostgreSQL)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def study_ratings(session: Session, study_id: int, filters: ExportFilters) -> tuple[pd.DataFrame, Any]:
    """The study's ratings (``vote_ratings``) kept by ``filters`` (cases; judgment dates), and the newest
    judgment time among them."""
    ratings, dates = vote_ratings(session, study_id)
    allowed = set(
        session.connection().execute(select(Case.key).where(Case.id.in_(case_query(filters)))).scalars()
    )
    keep_items = {item for item, when in dates.items() if filters.in_range(when)}
    ratings = ratings[ratings["case"].isin(allowed) & ratings["item"].isin(keep_items)]
    newest = max((dates[i] for i in ratings["item"].unique()), default=None)
    return ratings, newest


def study_outputs(session: Session, study: Study) -> dict[tuple[str, str], Output]:
    """{(case key, model name): Output} for every prediction of the study's runs (frames loaded once each)."""
    session.flush()
    rows = (
        session.connection()
        .execute(
            select(
                Case.key,
                Model.name,
                Prediction.id,
                Prediction.raw_text,
                type_coerce(Prediction.parsed, Text),
                Prediction.phase,
                Case.dataset,
                Case.procedure,
                Case.frame_id,
            )
            .join(StudyModel, and_(StudyModel.run_id == Prediction.run_id, StudyModel.study_id == study.id))
            .join(Model, Model.id == StudyModel.model_id)
            .join(Case, Case.id == Prediction.case_id)
        )
        .all()
    )
    frame_ids = sorted({row[-1] for row in rows})
    frames = {}
    for start in range(0, len(frame_ids), 500):
        frames.update(
            {
                f.id: f
                for f in session.scalars(select(Frame).where(Frame.id.in_(frame_ids[start : start + 500])))
            }
        )
    return {
        (key, model): Output(
            study.name, study.task, key, model, pid, raw, parsed, phase, dataset, procedure, frames[frame_id]
        )
        for key, model, pid, raw, parsed, phase, dataset, procedure, frame_id in rows
    }


# --- rows -------------------------------------------------------------------------------------------------


@dataclass
class Rows:
    """What a builder produced: data rows, aligned provenance rows, and counts of what was left out."""

    data: list[dict[str, Any]]
    provenance: list[dict[str, Any]]
    skipped: dict[str, int]

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _new_rows() -> Rows:
    return Rows([], [], {})


def dpo_rows(
    judged: pd.DataFrame, outputs: dict, image_of, target: str | None, *, ranking: bool = False
) -> Rows:
    """TRL DPO rows (or LLaMA-Factory ranking rows) for the preference pairs of ``judged`` (``verdicts``).
    ``image_of(frame)`` gives an image's relative path in the bundle."""
    rows = _new_rows()
    conversations: dict[tuple[str, str], list[Message] | None] = {}
    for case, chosen, rejected in preference_pairs(judged).itertuples(index=False):
        pair = []
        for model in (chosen, rejected):
            if (case, model) not in conversations:
                output = outputs.get((case, model))
                conversations[case, model] = output.conversation(target) if output else None
            pair.append(conversations[case, model])
        if pair[0] is None or pair[1] is None:
            missing = chosen if pair[0] is None else rejected
            output = outputs.get((case, missing))
            rows.skip(output.unusable(target) if output else "output without text")
            continue
        shared = common_prompt(pair[0], pair[1])
        prompt, good, bad = pair[0][:shared], pair[0][shared:], pair[1][shared:]
        output = outputs[case, chosen]
        images = [image_of(output.frame)]
        if ranking:
            if len(good) != 1 or len(bad) != 1:
                # LLaMA-Factory ranking rows hold one chosen and one rejected message: pairs whose turn 1
                # differs (another phase, so another turn-2 prompt) cannot be written that way.
                rows.skip("pair differs before its last turn (ranking holds one message each)")
                continue
            rows.data.append(sharegpt_ranking_row(prompt, good[0], bad[0], images))
        else:
            rows.data.append(trl_dpo_row(prompt, good, bad, images))
        rows.provenance.append(
            {
                "study": output.study,
                "case": case,
                "chosen_model": chosen,
                "rejected_model": rejected,
                "chosen_prediction": output.prediction_id,
                "rejected_prediction": outputs[case, rejected].prediction_id,
            }
        )
    return rows


def kto_rows(judged: pd.DataFrame, outputs: dict, image_of, target: str | None) -> Rows:
    """TRL KTO rows: every output with a decided correctness verdict; label True when rated correct."""
    rows = _new_rows()
    for case, model, label in judged.loc[judged["label"].notna(), ["case", "model", "label"]].itertuples(
        index=False
    ):
        output = outputs.get((case, model))
        conversation = output.conversation(target) if output else None
        if conversation is None:
            rows.skip(output.unusable(target) if output else "output without text")
            continue
        rows.data.append(
            trl_kto_row(conversation[:1], conversation[1:], bool(label), [image_of(output.frame)])
        )
        rows.provenance.append(
            {"study": output.study, "case": case, "model": model, "prediction": output.prediction_id}
        )
    return rows


def process_rows(judged: pd.DataFrame, outputs: dict, image_of) -> Rows:
    """Process labels: per output, its Level texts in order and each level's verdict (True correct), kept
    up to the first level without a text or a decided verdict. Stepwise-supervision columns (prompt,
    completions, labels) plus the level numbers, the output's whole-answer verdict and images."""
    rows = _new_rows()
    for record in judged.itertuples(index=False):
        output = outputs.get((record.case, record.model))
        if output is None:
            rows.skip("output without text")
            continue
        levels = output.parsed_output().levels
        steps, labels, numbers = [], [], []
        for n in LEVELS:
            verdict = getattr(record, f"level{n}_label")
            if not (levels.get(n) or "").strip() or pd.isna(verdict):
                break
            steps.append(levels[n].strip())
            labels.append(bool(verdict))
            numbers.append(n)
        if not steps:
            rows.skip("no level with a text and a decided verdict")
            continue
        vocabulary = vocabulary_for(output.task, output.dataset, output.procedure)
        prompt = _prompt_of(output, vocabulary)
        answer = None if pd.isna(record.label) else bool(record.label)
        rows.data.append(
            {
                "prompt": prompt,
                "completions": steps,
                "labels": labels,
                "levels": numbers,
                "answer_label": answer,
                "images": [image_of(output.frame)],
            }
        )
        rows.provenance.append(
            {
                "study": output.study,
                "case": record.case,
                "model": record.model,
                "prediction": output.prediction_id,
                "votes": {
                    f"level{n}": [
                        int(getattr(record, f"level{n}_correct")),
                        int(getattr(record, f"level{n}_wrong")),
                    ]
                    for n in LEVELS
                },
            }
        )
    return rows


def _prompt_of(output: Output, vocabulary) -> list[Message]:  # noqa: ANN001
    """The prompt of the turn the levels belong to (the last turn of a two-turn output)."""
    conversation = output.conversation(None) or task_conversation(output.task, vocabulary, [])
    last_user = max(i for i, m in enumerate(conversation) if m["role"] == "user")
    return conversation[: last_user + 1]


# --- the export service -----------------------------------------------------------------------------------

FILES = {"dpo": "dpo.jsonl", "kto": "kto.jsonl", "ranking": "ranking.jsonl", "process": "process.jsonl"}
FORMATS = {
    "dpo": "trl-dpo",
    "kto": "trl-kto",
    "ranking": "llamafactory-sharegpt-ranking",
    "process": "process-labels",
}


def judged_outputs(
    session: Session, filters: ExportFilters, rules: PairRules
) -> Iterator[tuple[Study, pd.DataFrame, dict, Any]]:
    """Per study admitted by ``filters``: (study, verdicts, outputs, newest judgment time)."""
    for study_id in find_study_ids(session, filters):
        study = session.get(Study, study_id)
        ratings, newest = study_ratings(session, study_id, filters)
        if not len(ratings):
            continue
        yield study, verdicts(output_votes(ratings), rules), study_outputs(session, study), newest


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
        total, counts, newest_all, studies = _new_rows(), {}, None, []
        for study, judged, outputs, newest in judged_outputs(session, filters, rules):
            rows = _rows_of(kind, judged, outputs, bundle.image, target)
            total.data += rows.data
            total.provenance += rows.provenance
            for reason, n in rows.skipped.items():
                total.skipped[reason] = total.skipped.get(reason, 0) + n
            studies.append(study.name)
            counts[f"study:{study.name}"] = _study_counts(judged, len(rows.data))
            newest_all = newest if newest_all is None or (newest and newest > newest_all) else newest_all
        bundle.write_jsonl(FILES[kind], total.data)
        bundle.write_jsonl("provenance.jsonl", total.provenance)
        if kind == "ranking":
            bundle.write_json(
                "dataset_info.json", {"surgreview_ranking": dataset_info_entry(FILES[kind], ranking=True)}
            )
        counts = {"rows": len(total.data), "skipped": dict(sorted(total.skipped.items())), **counts}
        manifest = bundle.manifest(
            kind,
            FORMATS[kind],
            filters=filters,
            counts=counts,
            source_as_of=newest_all,
            extra={"pair_rules": rules.as_dict(), "target": target, "studies": studies},
        )
        actor_id, label = (by.user_id, by.username) if isinstance(by, Actor) else (None, by)
        return finish_bundle(
            session, bundle, manifest, overwrite=overwrite, actor_id=actor_id, actor_label=label
        )


def _rows_of(kind: str, judged: pd.DataFrame, outputs: dict, image_of, target: str | None) -> Rows:  # noqa: ANN001
    if kind == "dpo":
        return dpo_rows(judged, outputs, image_of, target)
    if kind == "ranking":
        return dpo_rows(judged, outputs, image_of, target, ranking=True)
    if kind == "kto":
        return kto_rows(judged, outputs, image_of, target)
    return process_rows(judged, outputs, image_of)


def _study_counts(judged: pd.DataFrame, rows: int) -> dict[str, int]:
    return {
        "outputs": len(judged),
        "chosen": int(judged["chosen"].sum()),
        "rejected": int(judged["rejected"].sum()),
        "correct": int(judged["label"].fillna(False).sum()),
        "incorrect": int((~judged["label"].fillna(True)).sum()),
        "rows": rows,
    }
