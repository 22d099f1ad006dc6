"""Training rows from judged outputs: TRL DPO and KTO, LLaMA-Factory ranking, and process labels.

Each builder yields its data rows one by one, so an export writes them as they come (the memory of a
written chunk is used again for the next one), and appends the aligned provenance rows and the counts of
what it left out to a ``Rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy.orm import Session

from db.schema import Study
from models.chat_formats import (
    FormatError,
    Message,
    sharegpt_ranking_row,
    trl_dpo_json,
    trl_kto_row,
)
from models.conversations import EncodedConversation
from models.vocabularies import vocabulary_for
from review.preferences.outputs import (
    FrameFile,
    Output,
    StudyOutputs,
    encoded_predictions,
    frame_files,
)
from review.preferences.pairs import TalliedPairs
from review.preferences.votes import LEVELS, preference_pairs

ImageOf = Callable[[FrameFile], str]
Outputs = StudyOutputs
DataRow = dict[str, Any] | bytes  # bytes: a row already encoded as compact JSON


@dataclass
class Rows:
    """What builders report beside the data rows they yield: one provenance row per data row, in the same
    order, and how many outputs or pairs each reason left out."""

    provenance: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def common_prompt(a: list[Message], b: list[Message]) -> int:
    """How many leading messages two conversations share, cut back so the shared part ends with a user turn
    (the prompt of a preference row)."""
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    while shared > 0 and a[shared - 1]["role"] != "user":
        shared -= 1
    return shared


def dpo_rows(
    judged: pd.DataFrame,
    outputs: Outputs,
    image_of: ImageOf,
    target: str | None,
    rows: Rows,
    *,
    ranking: bool = False,
) -> Iterator[DataRow]:
    """TRL DPO rows (or LLaMA-Factory ranking rows) for the preference pairs of ``judged`` (``verdicts``).
    ``image_of(frame)`` gives an image's relative path in the bundle. DPO rows come encoded (bytes equal to
    ``orjson.dumps(trl_dpo_row(...))``): each output's messages are encoded once, the shared prompt messages
    once for all rows."""
    pairs = preference_pairs(judged)
    if ranking:
        yield from _ranking_rows(pairs, outputs, image_of, target, rows)
        return
    chosen_ids, rejected_ids = pairs["chosen_prediction"].to_numpy(), pairs["rejected_prediction"].to_numpy()
    made = outputs.encoded(np.concatenate([chosen_ids, rejected_ids]), target)
    case_ids = outputs.case_ids(chosen_ids).tolist()
    frame_ids = [outputs.cases[case_id][3] for case_id in case_ids]
    columns = ("case", "chosen", "rejected", "chosen_prediction", "rejected_prediction")
    yield from encoded_pair_rows(
        outputs.name,
        zip(*(pairs[c].tolist() for c in columns), frame_ids, strict=True),
        made,
        lambda frame_id: image_of(outputs.frames[frame_id]),
        rows,
        lambda prediction_id: outputs.output(prediction_id).unusable(target),
    )


def tallied_dpo_rows(
    session: Session, study: Study, tallied: TalliedPairs, image_of: ImageOf, rows: Rows
) -> Iterator[DataRow]:
    """TRL DPO rows of a study's pairs decided from its tallies (``tallied_pairs``), each output in its own
    words (no target): the same rows ``dpo_rows`` makes of the same pairs."""
    kinds = {}  # prediction id: (dataset, procedure) of its case
    for pair in tallied.pairs:
        kinds[pair[3]] = kinds[pair[4]] = pair[6:8]
    made = encoded_predictions(session, study.task, kinds)
    frames = frame_files(session, {pair[5] for pair in tallied.pairs})
    yield from encoded_pair_rows(
        study.name,
        (pair[:6] for pair in tallied.pairs),
        made,
        lambda frame_id: image_of(frames[frame_id]),
        rows,
        lambda _: "output without text",
    )


def encoded_pair_rows(
    study: str,
    pairs: Iterable[tuple[str, str, str, int, int, int]],
    made: Mapping[int, EncodedConversation | None],
    image_of: Callable[[int], str],
    rows: Rows,
    unusable: Callable[[int], str],
) -> Iterator[bytes]:
    """TRL DPO rows (bytes equal to ``orjson.dumps(trl_dpo_row(...))``) of ``pairs`` (case key, chosen model,
    rejected model, chosen prediction, rejected prediction, frame id) from each prediction's encoded
    conversation (``made``; None: it has none, and ``unusable(prediction)`` says why); ``image_of(frame id)``
    is the image's path in the bundle."""
    images: dict[int, tuple[list[str], bytes]] = {}  # frame id: the row's images and their JSON
    for case, chosen, rejected, chosen_id, rejected_id, frame_id in pairs:
        good, bad = made[chosen_id], made[rejected_id]
        if good is None or bad is None:
            rows.skip(unusable(chosen_id if good is None else rejected_id))
            continue
        shared = good.prompt_length(bad)
        found = images.get(frame_id)
        if found is None:
            paths = [image_of(frame_id)]
            found = images[frame_id] = (paths, orjson.dumps(paths))
        parts = sum(good.shape.images[:shared])
        if parts != len(found[0]):
            raise FormatError(f"{parts} image parts in the messages but {len(found[0])} images")
        rows.provenance.append(
            {
                "study": study,
                "case": case,
                "chosen_model": chosen,
                "rejected_model": rejected,
                "chosen_prediction": chosen_id,
                "rejected_prediction": rejected_id,
            }
        )
        yield trl_dpo_json(good.messages[:shared], good.messages[shared:], bad.messages[shared:], found[1])


def _ranking_rows(
    pairs: pd.DataFrame, outputs: Outputs, image_of: ImageOf, target: str | None, rows: Rows
) -> Iterator[DataRow]:
    """LLaMA-Factory ranking rows of ``pairs``."""
    cases, chosen_models, rejected_models = (pairs[c].tolist() for c in ("case", "chosen", "rejected"))
    outputs.load(
        [*zip(cases, chosen_models, strict=True), *zip(cases, rejected_models, strict=True)],
        parsed=target is not None,
    )
    made: dict[tuple[str, str], _Made] = {}  # the outputs of the current case (pairs come sorted by case)
    current = None
    for case, chosen, rejected in zip(cases, chosen_models, rejected_models, strict=True):
        if case != current:
            made.clear()
            current = case
        good_output, good_turns = _made(made, outputs, (case, chosen), target)
        bad_output, bad_turns = _made(made, outputs, (case, rejected), target)
        if good_turns is None or bad_turns is None:
            output = good_output if good_turns is None else bad_output
            rows.skip(output.unusable(target) if output else "output without text")
            continue
        shared = common_prompt(good_turns, bad_turns)
        prompt, good, bad = good_turns[:shared], good_turns[shared:], bad_turns[shared:]
        if len(good) != 1 or len(bad) != 1:
            # LLaMA-Factory ranking rows hold one chosen and one rejected message: pairs whose turn 1
            # differs (another phase, so another turn-2 prompt) cannot be written that way.
            rows.skip("pair differs before its last turn (ranking holds one message each)")
            continue
        row = sharegpt_ranking_row(prompt, good[0], bad[0], [image_of(good_output.frame)])
        rows.provenance.append(
            {
                "study": good_output.study,
                "case": case,
                "chosen_model": chosen,
                "rejected_model": rejected,
                "chosen_prediction": good_output.prediction_id,
                "rejected_prediction": bad_output.prediction_id,
            }
        )
        yield row


# An output of a pair and its conversation; None where it has none.
_Made = tuple[Output | None, list[Message] | None]


def _made(
    made: dict[tuple[str, str], _Made], outputs: Outputs, key: tuple[str, str], target: str | None
) -> _Made:
    """The output ``key`` with its conversation, made once per case."""
    found = made.get(key)
    if found is None:
        output = outputs.get(key)
        found = made[key] = (None, None) if output is None else (output, output.conversation(target))
    return found


def kto_rows(
    judged: pd.DataFrame, outputs: Outputs, image_of: ImageOf, target: str | None, rows: Rows
) -> Iterator[DataRow]:
    """TRL KTO rows: every output with a decided correctness verdict; label True when rated correct."""
    decided = judged.loc[judged["label"].notna(), ["case", "model", "label"]]
    outputs.load(zip(decided["case"], decided["model"], strict=True), parsed=target is not None)
    for case, model, label in decided.itertuples(index=False):
        output = outputs.get((case, model))
        conversation = output.conversation(target) if output else None
        if conversation is None:
            rows.skip(output.unusable(target) if output else "output without text")
            continue
        row = trl_kto_row(conversation[:1], conversation[1:], bool(label), [image_of(output.frame)])
        rows.provenance.append(
            {"study": output.study, "case": case, "model": model, "prediction": output.prediction_id}
        )
        yield row


def process_rows(judged: pd.DataFrame, outputs: Outputs, image_of: ImageOf, rows: Rows) -> Iterator[DataRow]:
    """Process labels: per output, its Level texts in order and each level's verdict (True correct), kept
    up to the first level without a text or a decided verdict. Stepwise-supervision columns (prompt,
    completions, labels) plus the level numbers, the output's whole-answer verdict and images."""
    outputs.load(zip(judged["case"], judged["model"], strict=True))
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
        answer = None if pd.isna(record.label) else bool(record.label)
        row = {
            "prompt": _prompt_of(output),
            "completions": steps,
            "labels": labels,
            "levels": numbers,
            "answer_label": answer,
            "images": [image_of(output.frame)],
        }
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
        yield row


def _prompt_of(output: Output) -> list[Message]:
    """The prompt of the turn the levels belong to (the last turn of a two-turn output)."""
    vocabulary = vocabulary_for(output.task, output.dataset, output.procedure)
    conversation = output.conversation(None) or output.conversations.conversation(output.task, vocabulary, [])
    last_user = max(i for i, m in enumerate(conversation) if m["role"] == "user")
    return conversation[: last_user + 1]
