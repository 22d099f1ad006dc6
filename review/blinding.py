"""What a reviewer may see of an item, and text that gives a model away. Pure.

``blind_item`` builds the ONLY payload a reviewer's browser receives: the item's opaque token, an opaque
frame token, the question, and per letter the output's content (answer, levels, rationale, boxes) in a
neutral colour of the letter. Model names and ids, run and prediction ids, model colours, latency, token
counts, raw text and parser warnings never enter it.

The item token is an opaque random string stored on the item (``secrets.token_urlsafe``, see
``new_token``), not an HMAC of its id: there is no key to manage or rotate, a token reveals nothing about
ids or order, and it is looked up through a unique index.

Box tasks show the answer as the phase (Go Zone) or not at all (localization) and the boxes in canonical
pixels rounded to whole pixels: the raw box text and the fractional parts of converted coordinates carry
the model's box convention, which would tell model families apart. Phase answers are shown under the
vocabulary's phase name for the same reason ("B" vs "Dissection of Calot's Triangle").
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from models.vocabularies import Vocabulary

# One neutral style per letter, the same in every study; never a model's own colour.
LETTER_COLORS = {"A": "#5B6770", "B": "#8A6F4E", "C": "#4E6E8A", "D": "#6E5B8A", "E": "#5B8A6E"}
BOX_TASKS = ("gozone", "localization")
PHASE_TASKS = ("phase", "gozone")
QUESTIONS = {
    "phase": "Which surgical phase is shown in this frame?",
    "triplet": "Which instrument-verb-target triplets are visible in this frame?",
    "action": "Which suturing action is performed in this frame?",
    "cvs": "Which criteria of the critical view of safety are met in this frame?",
    "localization": "Where is the instrument in this frame?",
    "gozone": "In which phase is the operation, and where is it safe to operate now (the Go Zone)?",
}

# Models and vendors a reviewer must not learn about from an output's own words.
IDENTITY_TERMS = (
    "ChatGPT", "GPT", "GPT-4V", "OpenAI", "Gemini", "Bard", "Gemma", "Google", "DeepMind", "Claude",
    "Anthropic", "Qwen", "Tongyi", "Alibaba", "Llama", "Meta", "LLaVA", "Mistral", "Mixtral", "DeepSeek",
    "InternVL", "MiniCPM", "Phi", "Microsoft", "Surg-R1", "SurGo-R1", "SurGo", "ResGo",
)
SELF_REFERENCES = ("as an AI model", "as an AI language model", "as an AI assistant", "as a language model",
                   "I am an AI", "I'm an AI", "large language model")


def new_token() -> str:
    """A fresh opaque URL-safe token (22 characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class BlindOutput:
    """One lettered output as a reviewer sees it."""

    letter: str
    color: str
    answer: str | None
    levels: dict[str, str] = field(default_factory=dict)
    reasoning: str | None = None  # free-form thinking, only for outputs without levels
    rationale: dict[str, str] = field(default_factory=dict)
    boxes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BlindItem:
    """Everything a reviewer's browser receives for one item."""

    token: str
    frame: str
    question: str
    outputs: tuple[BlindOutput, ...]

    def to_json(self) -> dict[str, Any]:
        """The payload as plain JSON-serializable dicts and lists."""
        return asdict(self)


def blind_item(token: str, frame_token: str, task: str, outputs: Mapping[str, Mapping[str, Any] | None],
               vocabulary: Vocabulary | None = None) -> BlindItem:
    """The payload of an item: ``outputs`` maps each letter to its prediction's parsed JSON (or None when
    the output could not be read); ``vocabulary`` names the phases of the case."""
    shown = tuple(blind_output(letter, task, parsed or {}, vocabulary)
                  for letter, parsed in sorted(outputs.items()))
    return BlindItem(token, frame_token, QUESTIONS.get(task, "How good is each answer?"), shown)


def blind_output(letter: str, task: str, parsed: Mapping[str, Any],
                 vocabulary: Vocabulary | None) -> BlindOutput:
    """The reviewer's view of one parsed output (see the module docstring for what is left out)."""
    levels = {str(k): str(v) for k, v in sorted((parsed.get("levels") or {}).items()) if v}
    reasoning = None if levels else (parsed.get("thinking") or None)
    return BlindOutput(
        letter=letter, color=LETTER_COLORS[letter], answer=_answer(task, parsed, vocabulary), levels=levels,
        reasoning=reasoning, rationale={k: v for k, v in (parsed.get("rationale") or {}).items() if v},
        boxes=[_box(task, b) for b in parsed.get("boxes") or () if task in BOX_TASKS],
    )


def _box(task: str, box: Mapping[str, Any]) -> dict[str, Any]:
    """A box in whole canonical pixels; a label only where it names what was found (localization), since a
    Go Zone's label ("go zone", or none) is a model's habit, not content."""
    shown: dict[str, Any] = {"box": [round(float(v)) for v in box["box"]]}
    if task == "localization":
        shown["label"] = box.get("label")
    return shown


def _answer(task: str, parsed: Mapping[str, Any], vocabulary: Vocabulary | None) -> str | None:
    phase = parsed.get("phase")
    if task in PHASE_TASKS and phase and vocabulary is not None:
        try:
            return vocabulary.phase(phase).name
        except KeyError:
            pass
    if task in BOX_TASKS:
        return phase if task == "gozone" else None
    return parsed.get("answer")


def output_text(output: BlindOutput) -> str:
    """All words of a blinded output, for the identity-leak scan."""
    parts = [output.answer or "", output.reasoning or "", *output.levels.values(), *output.rationale.values(),
             *(str(b.get("label") or "") for b in output.boxes)]
    return "\n".join(p for p in parts if p)


def identity_leaks(text: str | None, extra_names: Iterable[str] = ()) -> list[str]:
    """The model, vendor and self-reference terms ``text`` contains (case-insensitive, whole words; a
    version may follow: "Qwen2.5", "GPT-4o"), each once, in order of first appearance. ``extra_names`` adds
    terms such as the study's own model names; '-', '_', '.' and spaces inside a term match each other."""
    if not text:
        return []
    terms, pattern = _scanner(tuple(extra_names))
    return list(dict.fromkeys(terms[match.lastindex - 1] for match in pattern.finditer(text)))


@cache
def _scanner(extra_names: tuple[str, ...]) -> tuple[tuple[str, ...], re.Pattern[str]]:
    """(terms, one pattern with a group per term). Longer terms come first, so "GPT-4V" wins over "GPT" and
    "demo-surg-r1" over "Surg-R1" at the same place."""
    every = (*IDENTITY_TERMS, *SELF_REFERENCES, *extra_names)
    terms = tuple(sorted(dict.fromkeys(t for t in every if t.strip()), key=lambda t: (-len(t), t)))
    groups = "|".join(f"({_body(term)})" for term in terms)
    # Letters may not continue the word on either side; digits may follow (a version number).
    return terms, re.compile(rf"(?<![A-Za-z0-9])(?:{groups})(?![A-Za-z])", re.IGNORECASE)


def _body(term: str) -> str:
    return r"[-_.\s]?".join(re.escape(piece) for piece in re.split(r"[-_.\s]+", term.strip()) if piece)
