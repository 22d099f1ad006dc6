"""The outputs a study's reviewers judged: one model's prediction for one case, with its text and frame."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from sqlalchemy import Text, and_, select, type_coerce
from sqlalchemy.orm import Session

from db.schema import Case, Frame, Model, Prediction, Study, StudyModel
from models.chat_formats import (
    Message,
    box_answer,
    gozone_targets,
    level_target,
    target_box,
)
from models.conversations import ConversationBuilder, EncodedConversation, raw_turns
from models.parsing.result import ParsedOutput
from models.vocabularies import Vocabulary, vocabulary_for
from review.preferences.votes import StudyVotes, among, json_value, plain_rows


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
    phase: str | None  # the phase the parser read (turn 1 of phase-then-go)
    dataset: str
    procedure: str
    frame: FrameFile
    source: StudyOutputs  # the study's outputs: shared conversation builder, parsed columns read on demand

    @property
    def conversations(self) -> ConversationBuilder:
        """Shared by a study's outputs: the prompt messages are built once."""
        return self.source.conversations

    def parsed_output(self) -> ParsedOutput:
        return ParsedOutput.from_json(json_value(self.source.parsed_json(self.prediction_id)) or {})

    def conversation(self, target: str | None) -> list[Message] | None:
        """The full conversation (prompt turns and this output's turns), or None when the output has no
        usable text (or, for a ``target``, no renderable answer). Prompt messages are shared objects."""
        parts = self._parts(target)
        return None if parts is None else self.conversations.conversation(self.task, *parts)

    def encoded_conversation(self, target: str | None) -> EncodedConversation | None:
        """``conversation(target)`` as the orjson encoding of each of its messages, or None."""
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


_Case = tuple[str, str, str, int]  # key, dataset, procedure, frame id


class StudyOutputs(Mapping[tuple[str, str], Output]):
    """{(case key, model name): Output} of a study's predictions. Which prediction is which output is read at
    once; the texts only for the outputs a caller ``load``s (a preference export needs those of its pairs,
    so most of the study's text is never read), and the parsed columns only when asked for."""

    def __init__(
        self,
        session: Session,
        study: Study,
        predictions: list[tuple[int, int, int]],
        cases: Mapping[int, _Case],
        models: Mapping[int, str],
        frames: Mapping[int, FrameFile],
    ) -> None:
        """``predictions``: (prediction id, case id, model id) of the study's runs; ``cases``: {case id: (key,
        dataset, procedure, frame id)}; ``models``: {model id: name}."""
        self.session, self.study, self.name, self.task = session, study, study.name, study.task
        self.cases, self.frames = cases, frames
        self.conversations = ConversationBuilder()
        self._texts: dict[int, tuple[str | None, str | None]] = {}  # prediction id: (raw text, phase)
        self._parsed: dict[int, Any] = {}  # prediction id: the parsed column as read (JSON text or a dict)
        # Vectorized: a study has 100,000 predictions and more. Cases and models are numbered by their
        # place in key and name order, so a prediction's (case, model) number is also its rank in that order.
        case_keys = sorted((case[0], case_id) for case_id, case in cases.items())
        model_names = sorted((name, model_id) for model_id, name in models.items())
        self._case_keys = case_keys
        self._case_id = [case_id for _, case_id in case_keys]
        self._model_number = {name: n for n, (name, _) in enumerate(model_names)}
        self._models = max(len(model_names), 1)  # the (case, model) number's base
        table = np.asarray(predictions, dtype=np.int64).reshape(-1, 3)  # prediction id, case id, model id
        case_ids = np.array(self._case_id, dtype=np.int64)
        by_id = np.argsort(case_ids)
        case_number = by_id[np.searchsorted(case_ids, table[:, 1], sorter=by_id)]
        model_ids = np.array([model_id for _, model_id in model_names], dtype=np.int64)
        by_model = np.argsort(model_ids)
        model_number = by_model[np.searchsorted(model_ids, table[:, 2], sorter=by_model)]
        code = case_number * self._models + model_number
        self._codes = code, table[:, 0]
        order = np.argsort(table[:, 0])
        self._sorted_ids = table[order, 0]
        self._case_id_of = table[order, 1]
        self._case_of = np.array([key for key, _ in case_keys], dtype=object)[case_number[order]]
        self._model_of = np.array([name for name, _ in model_names], dtype=object)[model_number[order]]
        self._rank_of = code[order]

    # Built on first use: an export that works by prediction id never needs them.
    @cached_property
    def _case_number(self) -> dict[str, int]:
        return {key: n for n, (key, _) in enumerate(self._case_keys)}

    @cached_property
    def _prediction_of(self) -> dict[int, int]:
        """{(case, model) number: prediction id}."""
        code, ids = self._codes
        return dict(zip(code.tolist(), ids.tolist(), strict=True))

    def _key_of(self, key: tuple[str, str]) -> tuple[int, int] | None:
        """(prediction id, case id) of the output ``key`` of the study, or None."""
        case, model = self._case_number.get(key[0]), self._model_number.get(key[1])
        if case is None or model is None:
            return None
        prediction = self._prediction_of.get(case * self._models + model)
        return None if prediction is None else (prediction, self._case_id[case])

    def labels(self, prediction_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The case keys, model names and (case key, model name) ranks of predictions of the study's runs
        (KeyError for any other)."""
        at = self._positions(prediction_ids)
        return self._case_of[at], self._model_of[at], self._rank_of[at]

    def _positions(self, prediction_ids: np.ndarray) -> np.ndarray:
        """Where predictions of the study are in ``_sorted_ids`` (KeyError for any other)."""
        ids = self._sorted_ids
        at = np.searchsorted(ids, prediction_ids).clip(max=max(len(ids) - 1, 0))
        if len(prediction_ids) and (not len(ids) or (ids[at] != prediction_ids).any()):
            raise KeyError("a rated prediction is not one of the study's runs")
        return at

    def encoded(self, prediction_ids: np.ndarray, target: str | None) -> dict[int, EncodedConversation | None]:
        """{prediction id: its conversation as message encodings (``Output.encoded_conversation``), or None
        where it has none (``unusable`` says why)} for predictions of the study, read in bulk. Without a
        ``target`` each output's own turns are encoded straight from its text."""
        ids = np.unique(np.asarray(prediction_ids, dtype=np.int64))
        if target is not None:
            self._load_ids(ids.tolist(), parsed=True)
            return {p: self.output(p).encoded_conversation(target) for p in ids.tolist()}
        kinds = {
            prediction_id: self.cases[case_id][1:3]  # dataset, procedure
            for prediction_id, case_id in zip(ids.tolist(), self.case_ids(ids).tolist(), strict=True)
        }
        return encoded_predictions(self.session, self.task, kinds, self.conversations)

    def case_ids(self, prediction_ids: np.ndarray) -> np.ndarray:
        """The case ids of predictions of the study (KeyError for any other)."""
        return self._case_id_of[self._positions(np.asarray(prediction_ids, dtype=np.int64))]

    def output(self, prediction_id: int) -> Output:
        """The output of a prediction of the study (KeyError for any other)."""
        at = int(np.searchsorted(self._sorted_ids, prediction_id))
        if at >= len(self._sorted_ids) or self._sorted_ids[at] != prediction_id:
            raise KeyError(prediction_id)
        return self.get((self._case_of[at], self._model_of[at]))

    def load(self, keys: Iterable[tuple[str, str]], *, parsed: bool = True) -> None:
        """Read the texts (and with ``parsed`` the parsed columns) of the outputs ``keys`` at once: call it
        before building rows from many outputs. An output not loaded is read alone when it is asked for."""
        self._load_ids({found[0] for found in map(self._key_of, keys) if found is not None}, parsed=parsed)

    def _load_ids(self, prediction_ids: Iterable[int], *, parsed: bool) -> None:
        missing = sorted(p for p in prediction_ids if p not in self._texts or (parsed and p not in self._parsed))
        if missing:
            self._read(missing, parsed=parsed)

    def _read(self, prediction_ids: list[int], *, parsed: bool) -> None:
        columns = [Prediction.id, Prediction.raw_text, Prediction.phase]
        if parsed:
            columns.append(type_coerce(Prediction.parsed, Text))
        query = select(*columns).where(among(self.session, Prediction.id, prediction_ids))
        for row in plain_rows(self.session, query):
            self._texts[row[0]] = (row[1], row[2])
            if parsed:
                self._parsed[row[0]] = row[3]

    def parsed_json(self, prediction_id: int) -> Any:
        """The parsed column of a prediction as read: JSON text (SQLite) or a dict (PostgreSQL)."""
        if prediction_id not in self._parsed:
            self._read([prediction_id], parsed=True)
        return self._parsed.get(prediction_id)

    def __getitem__(self, key: tuple[str, str]) -> Output:
        made = self.get(key)
        if made is None:
            raise KeyError(key)
        return made

    def get(self, key: tuple[str, str], default: Output | None = None) -> Output | None:
        found = self._key_of(key)
        if found is None:
            return default
        prediction_id, case_id = found
        text = self._texts.get(prediction_id)
        if text is None:
            self._read([prediction_id], parsed=False)
            text = self._texts.get(prediction_id, (None, None))
        _, dataset, procedure, frame_id = self.cases[case_id]
        return Output(
            self.name,
            self.task,
            key[0],
            key[1],
            prediction_id,
            text[0],
            text[1],
            dataset,
            procedure,
            self.frames[frame_id],
            self,
        )

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self._key_of(key) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """The outputs' keys in (case key, model name) order."""
        cases, models = list(self._case_number), list(self._model_number)
        for code in sorted(self._prediction_of):
            yield cases[code // self._models], models[code % self._models]

    def __len__(self) -> int:
        return len(self._prediction_of)


def study_outputs(session: Session, study: Study, votes: StudyVotes | None = None) -> StudyOutputs:
    """Which prediction of the study's runs is which output, with the cases and frames they show (read once
    each; texts are read by ``StudyOutputs.load``): the outputs ``votes`` counted, or every output."""
    if votes is None:
        runs = and_(StudyModel.run_id == Prediction.run_id, StudyModel.study_id == study.id)
        # (run_id, case_id) is unique, so its index covers this query: no prediction text is touched.
        predictions = np.array(
            plain_rows(
                session, select(Prediction.id, Prediction.case_id, StudyModel.model_id).join(StudyModel, runs)
            ),
            dtype=np.int64,
        ).reshape(-1, 3)
    else:
        predictions = np.stack([votes.predictions, votes.cases, votes.models], axis=1)
    models = dict(
        plain_rows(
            session,
            select(Model.id, Model.name)
            .join(StudyModel, StudyModel.model_id == Model.id)
            .where(StudyModel.study_id == study.id),
        )
    )
    shown = np.unique(predictions[:, 1]).tolist()
    cases = {
        row[0]: row[1:]
        for row in plain_rows(
            session,
            select(Case.id, Case.key, Case.dataset, Case.procedure, Case.frame_id).where(
                among(session, Case.id, shown)
            ),
        )
    }
    frames = frame_files(session, {case[3] for case in cases.values()})
    return StudyOutputs(session, study, predictions, cases, models, frames)


def encoded_predictions(
    session: Session, task: str, kinds: Mapping[int, tuple[str, str]], builder: ConversationBuilder | None = None
) -> dict[int, EncodedConversation | None]:
    """{prediction id: its conversation in its own turns as message encodings (``encoded_raws``), or None
    without text or row} of the predictions in ``kinds`` ({prediction id: (dataset, procedure) of its
    case}, which pick the vocabulary). The texts are read in bulk and encoded as they come: no copy is kept."""
    vocabularies = {kind: vocabulary_for(task, *kind) for kind in set(kinds.values())}
    rows = prediction_texts(session, kinds)
    groups: dict[Vocabulary, list[tuple[int, str | None, str | None]]] = {}
    if len(vocabularies) == 1:  # the usual study: one dataset and procedure
        groups[next(iter(vocabularies.values()))] = rows
    else:
        for row in rows:
            groups.setdefault(vocabularies[kinds[row[0]]], []).append(row)
    builder = builder or ConversationBuilder()
    made: dict[int, EncodedConversation | None] = dict.fromkeys(kinds)
    for vocabulary, group in groups.items():
        made.update(builder.encoded_raws(task, vocabulary, group))
    return made


def prediction_texts(session: Session, prediction_ids: Iterable[int]) -> list[tuple[int, str | None, str | None]]:
    """(prediction id, raw text, phase) of the predictions, in no particular order."""
    return plain_rows(
        session,
        select(Prediction.id, Prediction.raw_text, Prediction.phase).where(
            among(session, Prediction.id, sorted(prediction_ids))
        ),
    )


def frame_files(session: Session, frame_ids: Iterable[int]) -> dict[int, FrameFile]:
    """{frame id: FrameFile} of the frames."""
    rows = plain_rows(
        session,
        select(Frame.id, Frame.sha256, Frame.path, Frame.size_bytes, Frame.width, Frame.height).where(
            among(session, Frame.id, sorted(frame_ids))
        ),
    )
    return {row[0]: FrameFile(*row) for row in rows}
