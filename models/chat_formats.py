"""Pure builders of the chat formats training frameworks load as they are (DOMAIN.md section 6).

- TRL conversational: messages ``{"role", "content": [parts]}``; a user message with an image holds an
  ``{"type": "image"}`` part before its text. Every content is a list of parts, assistant ones too, so a JSON
  Lines file of such rows has one Arrow type per column and ``datasets.load_dataset("json")`` reads it.
- LLaMA-Factory sharegpt: ``{"conversations": [{"from": "human"|"gpt", "value"}], "images": [...]}`` with one
  ``<image>`` tag per image, in order; ranking rows add single ``"chosen"`` / ``"rejected"`` messages.
- Targets in a model family's own output form: Level-structured ``<think>`` plus ``<answer>``, boxes in the
  family's convention (``qwen25``: pixels of the Qwen2.5-VL smart-resized input; ``qwen3``: relative 0-1000).

Prompts come from ``models.prompts`` (the inference templates), so a training prompt equals the prompt the
model sees at inference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, NamedTuple

import orjson

from models.boxes import Box, canonical_to_qwen25, canonical_to_rel1000
from models.parsing.sections import split_turns
from models.prompts import TURN_SEPARATOR, PromptContext, PromptTemplate, template_for
from models.vocabularies import Vocabulary

Message = dict[str, Any]
IMAGE_TAG = "<image>"
ROLES_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system"}
# --target names: the model family whose box convention and output form the targets follow.
TARGETS = ("qwen25", "qwen3")
RATIONALE_TITLES = {
    "location": "Location",
    "exposure": "Exposure",
    "next_action": "Next action",
    "critical_risk": "Critical risk",
}
GO_ZONE_LABEL = "go zone"


class FormatError(ValueError):
    """Messages that cannot become the requested format (image tags and images disagree, a bad target)."""


# --- messages -------------------------------------------------------------------------------------------


def user_message(text: str, *, image: bool = False) -> Message:
    """A user message; ``image`` puts one image part before the text."""
    parts: list[dict[str, Any]] = [{"type": "image"}] if image else []
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def assistant_message(text: str) -> Message:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


_ASSISTANT_JSON = b'{"role":"assistant","content":[{"type":"text","text":', b"}]}"


def assistant_json(text: str) -> bytes:
    """``orjson.dumps(assistant_message(text))``: the same bytes, from the standard library's C string encoder.
    A row holds one such message per answer, and orjson escapes long strings slowly here: 66,666 answers of
    about 700 characters took 0.46 s with orjson and 0.18 s this way. Both escape only the quote, the
    backslash and the C0 controls (the same short forms), and refuse lone surrogates (orjson.JSONEncodeError
    here too)."""
    try:
        return _ASSISTANT_JSON[0] + encode_basestring(text).encode() + _ASSISTANT_JSON[1]
    except UnicodeEncodeError as error:
        raise orjson.JSONEncodeError(f"str is not valid UTF-8: {error.reason}") from None


def message_text(message: Message) -> str:
    """The text parts of a message joined (a plain-string content is returned as it is)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content if part.get("type") == "text")


def image_count(messages: Sequence[Message]) -> int:
    return sum(
        1
        for m in messages
        if not isinstance(m["content"], str)
        for part in m["content"]
        if part.get("type") == "image"
    )


def task_conversation(
    task: str, vocabulary: Vocabulary, assistant_turns: Sequence[str], phase_id: str | None = None
) -> list[Message]:
    """The conversation of ``task`` with the inference prompt templates: turn 1 (image + question), the
    assistant's first turn and, for the two-turn Go Zone task, turn 2 carrying the definition of ``phase_id``
    (the phase turn 1 chose) and the assistant's second turn. ``assistant_turns`` may be empty (a prompt)."""
    template = template_for(task)
    context = PromptContext(vocabulary=vocabulary)
    messages = template.first_turn(context)
    if not assistant_turns:
        return messages
    if template.turns == 1:
        return [*messages, assistant_message(assistant_turns[-1])]
    if len(assistant_turns) == 1:
        return [*messages, assistant_message(assistant_turns[0])]
    history = template.second_turn(messages, assistant_turns[0], phase_id, context)
    return [*history, assistant_message(assistant_turns[1])]


@dataclass(frozen=True, slots=True)
class Shape:
    """What conversations of one structure share: each message's role and number of image parts."""

    roles: tuple[str, ...]
    images: tuple[int, ...]

    @classmethod
    def of(cls, messages: Sequence[Message]) -> Shape:
        return cls(tuple(m["role"] for m in messages), tuple(image_count([m]) for m in messages))

    def __add__(self, other: Shape) -> Shape:
        return Shape(self.roles + other.roles, self.images + other.images)


_ASSISTANT = Shape(("assistant",), (0,))
_FirstTurn = tuple[PromptTemplate, list[Message], list[bytes], Shape, Shape]


class EncodedConversation(NamedTuple):
    """A conversation as the orjson encodings of its messages, in order, and its ``shape``. (A tuple: an
    export makes one per output, and a frozen dataclass costs several times as much to make.)"""

    messages: list[bytes]
    shape: Shape

    def prompt_length(self, other: EncodedConversation) -> int:
        """``common_prompt`` of the two conversations: equal messages have equal encodings."""
        mine, theirs = self.messages, other.messages
        shared, limit = 0, min(len(mine), len(theirs))
        while shared < limit and mine[shared] == theirs[shared]:
            shared += 1
        roles = self.shape.roles
        while shared > 0 and roles[shared - 1] != "user":
            shared -= 1
        return shared


class ConversationBuilder:
    """``task_conversation`` for many outputs, with each distinct prompt message built (and encoded) once and
    the same message object shared by every conversation that holds it: an export builds one conversation per
    output, the prompts repeat and the answers do not. Conversations from one builder must not be mutated."""

    def __init__(self) -> None:
        # (task, vocabulary) -> (template, turn-1 messages, their encodings, their shape, the shape with one
        # assistant turn after them)
        self._first: dict[tuple[str, Vocabulary], _FirstTurn] = {}
        # (task, vocabulary, phase) -> (turn-2 prompt message, its encoding, its shape)
        self._second: dict[tuple[str, Vocabulary, str | None], tuple[Message, bytes, Shape]] = {}

    def conversation(
        self, task: str, vocabulary: Vocabulary, assistant_turns: Sequence[str], phase_id: str | None = None
    ) -> list[Message]:
        """Equal to ``task_conversation(task, vocabulary, assistant_turns, phase_id)``."""
        template, first, _, _, _ = self._first_turn(task, vocabulary)
        if not assistant_turns:
            return list(first)
        if template.turns == 1 or len(assistant_turns) == 1:
            return [*first, assistant_message(assistant_turns[-1 if template.turns == 1 else 0])]
        second = self._second_turn(template, task, vocabulary, phase_id)[0]
        return [*first, assistant_message(assistant_turns[0]), second, assistant_message(assistant_turns[1])]

    def encoded(
        self, task: str, vocabulary: Vocabulary, assistant_turns: Sequence[str], phase_id: str | None = None
    ) -> EncodedConversation:
        """``conversation(...)`` as the orjson encoding of each of its messages (for rows written from
        encodings, such as ``trl_dpo_json``)."""
        template, _, first, shape, answered = self._first.get((task, vocabulary)) or self._first_turn(
            task, vocabulary
        )
        if not assistant_turns:
            return EncodedConversation(list(first), shape)
        if template.turns == 1 or len(assistant_turns) == 1:
            text = assistant_turns[-1 if template.turns == 1 else 0]
            return EncodedConversation([*first, assistant_json(text)], answered)
        _, second, second_shape = self._second_turn(template, task, vocabulary, phase_id)
        return EncodedConversation(
            [*first, assistant_json(assistant_turns[0]), second, assistant_json(assistant_turns[1])],
            second_shape,
        )

    def encoded_raw(
        self, task: str, vocabulary: Vocabulary, raw: str | None, phase_id: str | None
    ) -> EncodedConversation | None:
        """``encoded`` of a stored output's own turns (``raw_turns``), or None for an output without text."""
        if raw is None or not raw.strip():
            return None
        return self.encoded(task, vocabulary, raw_turns(raw), phase_id)

    def _first_turn(self, task: str, vocabulary: Vocabulary) -> _FirstTurn:
        found = self._first.get((task, vocabulary))
        if found is None:
            template = template_for(task)
            messages = template.first_turn(PromptContext(vocabulary=vocabulary))
            shape = Shape.of(messages)
            found = (template, messages, [orjson.dumps(m) for m in messages], shape, shape + _ASSISTANT)
            self._first[task, vocabulary] = found
        return found

    def _second_turn(
        self, template: PromptTemplate, task: str, vocabulary: Vocabulary, phase_id: str | None
    ) -> tuple[Message, bytes, Shape]:
        """The turn-2 prompt message, its encoding, and the shape of a whole two-turn conversation."""
        found = self._second.get((task, vocabulary, phase_id))
        if found is None:
            # The turn-2 prompt depends on the phase alone: build it once after an empty history.
            message = template.second_turn([], "", phase_id, PromptContext(vocabulary=vocabulary))[-1]
            shape = self._first_turn(task, vocabulary)[3] + _ASSISTANT + Shape.of([message]) + _ASSISTANT
            found = self._second[task, vocabulary, phase_id] = (message, orjson.dumps(message), shape)
        return found


_TURN_JOINT = f"\n{TURN_SEPARATOR}\n"  # how the runner joins the turns of a two-turn output


def raw_turns(raw: str) -> list[str]:
    """A stored output split into its assistant turns (turns are joined with a ``<|turn|>`` line)."""
    text = raw.replace("\r\n", "\n")
    if TURN_SEPARATOR not in text:
        return [text.strip()]
    parts = text.split(_TURN_JOINT)
    if text.count(TURN_SEPARATOR) == len(parts) - 1:  # only the runner's own joints: no regex needed
        return [part.strip() for part in parts]
    return split_turns(text)


# --- TRL rows ------------------------------------------------------------------------------------------


def trl_messages_row(messages: Sequence[Message], images: Sequence[str]) -> dict[str, Any]:
    """TRL SFT (language modelling, conversational): ``{"messages", "images"}``."""
    check_images(messages, images)
    return {"messages": list(messages), "images": list(images)}


def trl_dpo_row(
    prompt: Sequence[Message], chosen: Sequence[Message], rejected: Sequence[Message], images: Sequence[str]
) -> dict[str, Any]:
    """TRL DPO (conversational preference with an explicit prompt): prompt, chosen, rejected, images."""
    check_images(prompt, images)
    return {
        "prompt": list(prompt),
        "chosen": list(chosen),
        "rejected": list(rejected),
        "images": list(images),
    }


def trl_dpo_json(
    prompt: Sequence[bytes], chosen: Sequence[bytes], rejected: Sequence[bytes], images: Sequence[str]
) -> bytes:
    """``orjson.dumps(trl_dpo_row(...))`` from the messages' encodings (``ConversationBuilder.encoded``):
    orjson's compact form of an object is its members' forms joined, so the bytes are the same and shared
    messages are not encoded again. The caller checks the images against the prompt (``check_images``)."""
    return b"".join(
        (
            b'{"prompt":[',
            b",".join(prompt),
            b'],"chosen":[',
            b",".join(chosen),
            b'],"rejected":[',
            b",".join(rejected),
            b'],"images":',
            orjson.dumps(images if isinstance(images, list) else list(images)),
            b"}",
        )
    )


def trl_kto_row(
    prompt: Sequence[Message], completion: Sequence[Message], label: bool, images: Sequence[str]
) -> dict[str, Any]:
    """TRL KTO (unpaired preference): prompt, completion, label (True = desirable), images."""
    check_images(prompt, images)
    return {
        "prompt": list(prompt),
        "completion": list(completion),
        "label": bool(label),
        "images": list(images),
    }


def trl_prompt_row(prompt: Sequence[Message], images: Sequence[str], **extra: Any) -> dict[str, Any]:
    """TRL GRPO (prompt only) with extra columns, which TRL passes to the reward functions."""
    check_images(prompt, images)
    return {"prompt": list(prompt), "images": list(images), **extra}


def check_images(messages: Sequence[Message], images: Sequence[str]) -> None:
    """FormatError unless the messages hold one image part per image."""
    if image_count(messages) != len(images):
        raise FormatError(f"{image_count(messages)} image parts in the messages but {len(images)} images")


# --- LLaMA-Factory sharegpt -----------------------------------------------------------------------------


def sharegpt_message(message: Message) -> dict[str, str]:
    """One message as ``{"from", "value"}``; each image part becomes an ``<image>`` tag where it stands."""
    content = message["content"]
    if isinstance(content, str):
        value = content
    else:
        value = "".join(
            IMAGE_TAG if part.get("type") == "image" else part.get("text") or "" for part in content
        )
    return {"from": ROLES_SHAREGPT[message["role"]], "value": value}


def sharegpt_row(messages: Sequence[Message], images: Sequence[str]) -> dict[str, Any]:
    """LLaMA-Factory sharegpt SFT row: ``{"conversations", "images"}``, human and gpt alternating."""
    conversations = [sharegpt_message(m) for m in messages]
    _check_tags(conversations, images)
    return {"conversations": conversations, "images": list(images)}


def sharegpt_ranking_row(
    prompt: Sequence[Message], chosen: Message, rejected: Message, images: Sequence[str]
) -> dict[str, Any]:
    """LLaMA-Factory ranking (DPO) row: the prompt conversation ending with a human turn, one chosen and one
    rejected gpt message, images."""
    conversations = [sharegpt_message(m) for m in prompt]
    if conversations[-1]["from"] != "human":
        raise FormatError("a ranking prompt must end with a human turn")
    _check_tags(conversations, images)
    return {
        "conversations": conversations,
        "chosen": sharegpt_message(chosen),
        "rejected": sharegpt_message(rejected),
        "images": list(images),
    }


def _check_tags(conversations: Sequence[Mapping[str, str]], images: Sequence[str]) -> None:
    tags = sum(c["value"].count(IMAGE_TAG) for c in conversations)
    if tags != len(images):
        raise FormatError(f"{tags} {IMAGE_TAG} tags but {len(images)} images")


def dataset_info_entry(file_name: str, *, ranking: bool = False) -> dict[str, Any]:
    """The ``dataset_info.json`` entry LLaMA-Factory needs for a sharegpt file (``ranking`` for DPO)."""
    columns = {"messages": "conversations", "images": "images"}
    if ranking:
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    entry: dict[str, Any] = {"file_name": file_name, "formatting": "sharegpt"}
    if ranking:
        entry["ranking"] = True
    entry["columns"] = columns
    entry["tags"] = {
        "role_tag": "from",
        "content_tag": "value",
        "user_tag": "human",
        "assistant_tag": "gpt",
        "system_tag": "system",
    }
    return entry


# --- targets in a model family's output form -----------------------------------------------------------


def target_box(box: Box, width: int, height: int, target: str) -> list[int]:
    """``box`` (canonical original pixels) as whole numbers in ``target``'s convention: Qwen2.5-VL pixels of
    the smart-resized input, or Qwen3-VL relative 0-1000."""
    if target == "qwen25":
        values = canonical_to_qwen25(box, width, height)
    elif target == "qwen3":
        values = canonical_to_rel1000(box, width, height)
    else:
        raise FormatError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    return [round(v) for v in values]


def box_answer(boxes: Sequence[list[int]], label: str = GO_ZONE_LABEL) -> str:
    """Boxes as the JSON the prompts ask for: ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]``."""
    return json.dumps([{"bbox_2d": list(b), "label": label} for b in boxes])


def level_target(levels: Mapping[int, str], answer: str, thinking: str | None = None) -> str:
    """``<think> Level 1: ... Level 2: ... Level 3: ... </think><answer>ANSWER</answer>``; levels in order,
    empty ones left out. Without levels the free ``thinking`` is used, and without either only the answer."""
    reasoning = " ".join(
        f"Level {n}: {levels[n].strip()}" for n in sorted(levels) if (levels[n] or "").strip()
    )
    reasoning = reasoning or (thinking or "").strip()
    think = f"<think> {reasoning} </think>" if reasoning else ""
    return f"{think}<answer>{answer.strip()}</answer>"


def rationale_lines(parts: Mapping[str, str | None]) -> str:
    """The four Go Zone parts as the prompt asks for them: 'Location:', 'Exposure:', ... one per line;
    missing parts are left out."""
    return "\n".join(
        f"{title}: {parts[key].strip()}"
        for key, title in RATIONALE_TITLES.items()
        if (parts.get(key) or "").strip()
    )


def gozone_targets(
    phase_id: str,
    parts: Mapping[str, str | None],
    box: list[int],
    *,
    phase_thinking: str | None = None,
    levels: Mapping[int, str] | None = None,
    thinking: str | None = None,
) -> tuple[str, str]:
    """The two assistant turns of phase-then-go: (phase letter answer, rationale lines + box answer)."""
    first = level_target({}, phase_id, phase_thinking)
    reasoning = (
        " ".join(f"Level {n}: {levels[n].strip()}" for n in sorted(levels or {}) if (levels[n] or "").strip())
        or (thinking or "").strip()
    )
    think = f"<think> {reasoning} </think>\n" if reasoning else ""
    lines = rationale_lines(parts)
    second = (
        f"{think}{lines}\n<answer>{box_answer([box])}</answer>"
        if lines
        else f"{think}<answer>{box_answer([box])}</answer>"
    )
    return first, second


def sft_file_names(name: str) -> tuple[str, str, dict[str, Any]]:
    """The file names of an SFT export called ``name`` (TRL messages, sharegpt) and its dataset_info.json."""
    trl, sharegpt = f"{name}_trl.jsonl", f"{name}_sharegpt.jsonl"
    return trl, sharegpt, {f"surgreview_{name}": dataset_info_entry(sharegpt)}
