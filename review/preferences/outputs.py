"""The outputs a study's reviewers judged: one model's prediction for one case, with its text and frame."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Text, and_, select, type_coerce
from sqlalchemy.orm import Session

from db.schema import Case, Frame, Model, Prediction, Study, StudyModel
from models.chat_formats import (
    ConversationBuilder,
    Message,
    box_answer,
    gozone_targets,
    level_target,
    raw_turns,
    target_box,
)
from models.parsing.result import ParsedOutput
from models.vocabularies import Vocabulary, vocabulary_for
from review.preferences.votes import json_value, plain_rows


@dataclass(frozen=True, slots=True)
class FrameFile:
    """What an export needs of a frame: its file (``FrameStore.path``, ``Bundle.image``) and size."""

    id: int
    sha256: str
    path: str
    size_bytes: int
    width: int
    height: int


@dataclass(slots=True)
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
    frame: FrameFile
    conversations: ConversationBuilder  # shared by a study's outputs: the prompt messages are built once

    def parsed_output(self) -> ParsedOutput:
        return ParsedOutput.from_json(json_value(self.parsed_json) or {})

    def conversation(self, target: str | None) -> list[Message] | None:
        """The full conversation (prompt turns and this output's turns), or None when the output has no
        usable text (or, for a ``target``, no renderable answer). Prompt messages are shared objects."""
        parts = self._parts(target)
        return None if parts is None else self.conversations.conversation(self.task, *parts)

    def encoded_conversation(self, target: str | None) -> tuple[list[Message], list[bytes]] | None:
        """``conversation(target)`` and the orjson encoding of each of its messages, or None."""
        parts = self._parts(target)
        return None if parts is None else self.conversations.encoded(self.task, *parts)

    def _parts(self, target: str | None) -> tuple[Vocabulary, list[str], str | None] | None:
        """(vocabulary, assistant turns, phase id) of the conversation, or None without usable turns."""
        if target is None:
            turns, phase = self.turns(None), self.phase
        else:
            parsed = self.parsed_output()
            turns = render_turns(parsed, self.task, self.frame.width, self.frame.height, target)
            phase = parsed.phase
        if not turns:
            return None
        return vocabulary_for(self.task, self.dataset, self.procedure), turns, phase

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


class StudyOutputs(Mapping[tuple[str, str], Output]):
    """{(case key, model name): Output} of a study's predictions. The rows are read at once; an Output is made
    when asked for (an export touches only the outputs its rows need, once each)."""

    def __init__(self, study: Study, rows: list[tuple], frames: Mapping[int, FrameFile]) -> None:
        """``rows``: (case key, model name, prediction id, raw, parsed, phase, dataset, procedure, frame id)."""
        self.study, self.name, self.task = study, study.name, study.task
        self.frames = frames
        self.conversations = ConversationBuilder()
        self._rows = {(row[0], row[1]): row for row in rows}
        ids = np.fromiter((row[2] for row in rows), dtype=np.int64, count=len(rows))
        order = np.argsort(ids)
        self._sorted_ids = ids[order]
        self._case_of = np.array([row[0] for row in rows], dtype=object)[order]
        self._model_of = np.array([row[1] for row in rows], dtype=object)[order]

    def labels(self, prediction_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The case keys and model names of predictions of the study's runs (KeyError for any other)."""
        ids = self._sorted_ids
        at = np.searchsorted(ids, prediction_ids).clip(max=max(len(ids) - 1, 0))
        if len(prediction_ids) and (not len(ids) or (ids[at] != prediction_ids).any()):
            raise KeyError("a rated prediction is not one of the study's runs")
        return self._case_of[at], self._model_of[at]

    def __getitem__(self, key: tuple[str, str]) -> Output:
        made = self.get(key)
        if made is None:
            raise KeyError(key)
        return made

    def get(self, key: tuple[str, str], default: Output | None = None) -> Output | None:
        row = self._rows.get(key)
        if row is None:
            return default
        return Output(self.name, self.task, *row[:8], self.frames[row[8]], self.conversations)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def study_outputs(session: Session, study: Study) -> StudyOutputs:
    """Every prediction of the study's runs, with the frames of their cases (read once each)."""
    runs = and_(StudyModel.run_id == Prediction.run_id, StudyModel.study_id == study.id)
    rows = plain_rows(
        session,
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
        .join(StudyModel, runs)
        .join(Model, Model.id == StudyModel.model_id)
        .join(Case, Case.id == Prediction.case_id),
    )
    frames = plain_rows(
        session,
        select(Frame.id, Frame.sha256, Frame.path, Frame.size_bytes, Frame.width, Frame.height).where(
            Frame.id.in_(
                select(Case.frame_id).join(Prediction, Prediction.case_id == Case.id).join(StudyModel, runs)
            )
        ),
    )
    return StudyOutputs(study, rows, {row[0]: FrameFile(*row) for row in frames})
