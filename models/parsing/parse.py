"""parse_output: one raw model text -> ParsedOutput, any task and form; never raises on the text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from models.boxes import CONVENTIONS
from models.parsing import answers, sections
from models.parsing.box_text import read_boxes
from models.parsing.result import ParsedOutput
from models.vocabularies import Vocabulary, load

TASKS = ("phase", "triplet", "action", "cvs", "localization", "gozone")
# The Level a task's reasoning reaches (Surg-R1): localization stops at Level 1, triplets and actions at 2.
EXPECTED_LEVEL = {"localization": 1, "triplet": 2, "action": 2, "phase": 3, "cvs": 3, "gozone": 3}
BOX_TASKS = frozenset({"localization", "gozone"})
RATIONALE_PARTS = ("location", "exposure", "next_action", "critical_risk")
# NUL and lone surrogates cannot be stored as text or JSON in PostgreSQL; a parse result must be storable.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def parse_output(raw: str | None, *, task: str, box_convention: str, width: int, height: int,
                 vocabulary: Vocabulary | None = None,
                 input_size: tuple[int, int] | None = None) -> ParsedOutput:
    """Read a model's raw text for ``task``. Boxes are decoded with ``box_convention`` (the model's
    configuration; ``input_size`` is the Qwen2.5-VL resized input (w, h) when known) and fitted to the
    ``width`` x ``height`` frame. Go Zone phases use ResGo unless ``vocabulary`` says otherwise.

    Raises ValueError only for a wrong configuration (unknown task or convention, no frame size); anything
    odd in the text becomes a warning of the returned ParsedOutput.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if box_convention not in CONVENTIONS:
        raise ValueError(f"unknown box convention {box_convention!r}; known: {', '.join(CONVENTIONS)}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"frame size must be positive integers, got {width!r} x {height!r}")
    if not isinstance(raw, str) or not raw.strip():
        return ParsedOutput(warnings=["empty output"])
    if task == "gozone" and vocabulary is None:
        vocabulary = load("resgo")
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text, unstorable = _UNSTORABLE.subn("\ufffd", text)
    out = ParsedOutput(turns=sections.split_turns(text))
    if unstorable:
        out.warnings.append(f"{unstorable} NUL or lone surrogate character(s) replaced by U+FFFD")
    config = _Config(task, box_convention, width, height, vocabulary, input_size)
    try:
        if task == "gozone":
            _read_gozone(out, config)
        else:
            if len(out.turns) > 1:
                out.warnings.append(f"{len(out.turns)} turns in a {task} output; read the last one")
            reading = _read_main_turn(out, sections.read_turn(out.turns[-1]), task)
            _read_answer(out, reading.answer, config)
    except Exception as exc:  # the last guard of "never raises"; tests assert it never fires
        out.warnings.append(f"parser error: {exc.__class__.__name__}: {exc}")
    return out


@dataclass(frozen=True)
class _Config:
    """How one model's output is read: its task, box convention, frame, vocabulary."""

    task: str
    box_convention: str
    width: int
    height: int
    vocabulary: Vocabulary | None
    input_size: tuple[int, int] | None

    def boxes(self, answer: str) -> tuple[list, list[str]]:
        return read_boxes(answer, box_convention=self.box_convention, width=self.width, height=self.height,
                          input_size=self.input_size)


def _read_main_turn(out: ParsedOutput, reading: sections.TurnReading, task: str) -> sections.TurnReading:
    """Reasoning, Levels and answer of the turn that carries the task's answer."""
    out.warnings.extend(reading.warnings)
    out.thinking, out.answer = reading.thinking, reading.answer
    out.task_level = sections.find_task_level(reading.thinking)
    # In a Go Zone turn the four rationale parts (kept in ``rationale``) end the Level before them.
    ends = sections.rationale_starts(reading.thinking) if task == "gozone" else ()
    levels, order = sections.find_levels(reading.thinking, ends)
    out.levels = levels
    out.warnings.extend(sections.level_warnings(levels, order, out.task_level, task, EXPECTED_LEVEL[task]))
    if not reading.thinking:
        out.warnings.append("no reasoning given")
    return reading


def _read_answer(out: ParsedOutput, answer: str | None, config: _Config) -> None:
    if answer is None:
        if "empty answer" not in out.warnings:
            out.warnings.append("no answer found")
        return
    _ANSWER_READERS[config.task](out, answer, config)


def _phase_answer(out: ParsedOutput, answer: str, config: _Config, prefix: str = "") -> None:
    out.phase_raw = answer
    if config.vocabulary is None or not config.vocabulary.phases:
        out.warnings.append(f"{prefix}no phase vocabulary given; phase not normalized")
        return
    out.phase, warnings = answers.read_phase(answer, config.vocabulary)
    out.warnings.extend(prefix + w for w in warnings)


def _triplet_answer(out: ParsedOutput, answer: str, config: _Config) -> None:
    out.triplets, warnings = answers.read_triplets(answer, config.vocabulary)
    out.warnings.extend(warnings)


def _action_answer(out: ParsedOutput, answer: str, config: _Config) -> None:
    out.action, warnings = answers.read_action(answer, config.vocabulary)
    out.warnings.extend(warnings)


def _cvs_answer(out: ParsedOutput, answer: str, config: _Config) -> None:
    out.cvs, warnings = answers.read_cvs(answer)
    out.warnings.extend(warnings)


def _box_answer(out: ParsedOutput, answer: str, config: _Config) -> None:
    out.boxes, warnings = config.boxes(answer)
    out.warnings.extend(warnings)
    if not out.boxes and not any(w.startswith("box ") for w in warnings):
        out.warnings.append(f"no box found in answer {answers.quote(answer)}")


_ANSWER_READERS = {"phase": _phase_answer, "triplet": _triplet_answer, "action": _action_answer,
                   "cvs": _cvs_answer, "localization": _box_answer, "gozone": _box_answer}


def _read_gozone(out: ParsedOutput, config: _Config) -> None:
    """Phase from the first turn; reasoning, the four rationale parts and the box from the last. A single
    turn is the phase turn when its answer names a phase and holds no box nor rationale, else the Go Zone
    turn."""
    turns = out.turns
    reading = sections.read_turn(turns[-1])
    if len(turns) == 1:
        answer = reading.answer
        names_phase = answer is not None and answers.read_phase(answer, config.vocabulary)[0] is not None
        if names_phase and not config.boxes(answer)[0] and not sections.find_rationale(reading.outside, []):
            out.warnings.append("no Go Zone turn (expected the phase, a line <|turn|>, then the Go Zone)")
            _read_phase_turn(out, reading, config, prefix="")
            return
    else:
        if len(turns) > 2:
            out.warnings.append(f"{len(turns)} turns; expected 2 (phase, then Go Zone); "
                                "read the first and the last")
        _read_phase_turn(out, sections.read_turn(turns[0]), config, prefix="turn 1: ")
    _read_main_turn(out, reading, "gozone")
    if len(turns) == 1:  # Surg-R1 states the phase in its Level 3
        out.phase, out.phase_raw = answers.stated_phase(reading.thinking, config.vocabulary)
        if out.phase:
            out.warnings.append(f"phase read from the reasoning ({out.phase_raw!r}); there is no phase turn")
        else:
            out.warnings.append("no phase turn (expected the phase, a line <|turn|>, then the Go Zone) "
                                "and no phase stated in the reasoning")
    answer_span = reading.outside if reading.answer is None else reading.outside.replace(reading.answer, "\n")
    if reading.thinking and reading.thinking not in answer_span:  # else it was read from outside the tags
        answer_span = f"{answer_span}\n{reading.thinking}"
    out.rationale = sections.find_rationale(answer_span, out.warnings)
    missing = [part.replace("_", " ") for part in RATIONALE_PARTS if part not in out.rationale]
    if missing and (out.rationale or len(turns) > 1):  # the four-part form; Surg-R1 Go Zones have none
        out.warnings.append(f"missing rationale part{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    _read_answer(out, reading.answer, config)


def _read_phase_turn(out: ParsedOutput, reading: sections.TurnReading, config: _Config, prefix: str) -> None:
    out.phase_thinking = reading.thinking
    out.warnings.extend(prefix + w for w in reading.warnings)
    if reading.answer is None:
        out.warnings.append(f"{prefix}no phase answer found")
        return
    _phase_answer(out, reading.answer, config, prefix)
