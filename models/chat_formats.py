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
from json.encoder import encode_basestring
from typing import Any

import orjson

from models.boxes import Box, canonical_to_qwen25, canonical_to_rel1000
from models.prompts import PromptContext, template_for
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


# An assistant message's encoding around its JSON-quoted text.
ASSISTANT_JSON_ENDS = b'{"role":"assistant","content":[{"type":"text","text":', b"}]}"


def assistant_json(text: str) -> bytes:
    """``orjson.dumps(assistant_message(text))``: the same bytes, from the standard library's C string encoder.
    A row holds one such message per answer, and orjson escapes long strings slowly here: 66,666 answers of
    about 700 characters took 0.46 s with orjson and 0.18 s this way. Both escape only the quote, the
    backslash and the C0 controls (the same short forms), and refuse lone surrogates (orjson.JSONEncodeError
    here too)."""
    try:
        return ASSISTANT_JSON_ENDS[0] + encode_basestring(text).encode() + ASSISTANT_JSON_ENDS[1]
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
    prompt: Sequence[bytes], chosen: Sequence[bytes], rejected: Sequence[bytes], images: Sequence[str] | bytes
) -> bytes:
    """``orjson.dumps(trl_dpo_row(...))`` from the messages' encodings (``ConversationBuilder.encoded``):
    orjson's compact form of an object is its members' forms joined, so the bytes are the same and shared
    messages are not encoded again. ``images`` may come encoded already (``orjson.dumps`` of the list). The
    caller checks the images against the prompt (``check_images``)."""
    return b"".join(
        (
            b'{"prompt":[',
            b",".join(prompt),
            b'],"chosen":[',
            b",".join(chosen),
            b'],"rejected":[',
            b",".join(rejected),
            b'],"images":',
            images if isinstance(images, bytes) else orjson.dumps(list(images)),
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
