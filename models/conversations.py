"""Conversations of many outputs built and encoded fast, for exports (``task_conversation`` is the spec).

An export makes one conversation per judged output: the prompt messages repeat and the answers do not. The
builder makes each distinct prompt message (and its orjson encoding) once and shares it, and encodes the
answers with the standard library's C string encoder (``assistant_json``). An ``EncodedConversation`` is the
encodings of a conversation's messages with its ``Shape`` (each message's role and image parts), which is
all a preference row needs to be written from them (``trl_dpo_json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import NamedTuple, TypeVar

import orjson

from models.chat_formats import ASSISTANT_JSON_ENDS, Message, assistant_json, assistant_message, image_count
from models.parsing.sections import split_turns
from models.prompts import TURN_SEPARATOR, PromptContext, PromptTemplate, template_for
from models.vocabularies import Vocabulary

K = TypeVar("K")


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
        template, _, first, shape, answered = self._first_turn(task, vocabulary)
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

    def encoded_raws(
        self, task: str, vocabulary: Vocabulary, outputs: Iterable[tuple[K, str | None, str | None]]
    ) -> dict[K, EncodedConversation | None]:
        """{key: ``encoded(task, vocabulary, raw_turns(raw), phase)``, or None for an output without text} of
        stored outputs given as (key, raw, phase): one loop with those steps inlined (an export encodes one
        output per judged prediction, and calls would cost more than the encoding)."""
        made: dict[K, EncodedConversation | None] = {}
        head, tail = ASSISTANT_JSON_ENDS
        encode, joint, separator = encode_basestring, _TURN_JOINT, TURN_SEPARATOR
        template, _, prompt, _, answered = self._first_turn(task, vocabulary)
        last = -1 if template.turns == 1 else 0  # the turn a one-turn conversation keeps
        for key, raw, phase in outputs:
            if raw is None or not raw or raw.isspace():
                made[key] = None
                continue
            if "\r" in raw:
                raw = raw.replace("\r\n", "\n")
            try:
                if separator not in raw:
                    made[key] = EncodedConversation([*prompt, head + encode(raw.strip()).encode() + tail], answered)
                    continue
                parts = raw.split(joint)
                if raw.count(separator) != len(parts) - 1:
                    parts = split_turns(raw)
                if template.turns == 1 or len(parts) == 1:
                    text = parts[last].strip()
                    made[key] = EncodedConversation([*prompt, head + encode(text).encode() + tail], answered)
                    continue
                _, second, shape = self._second_turn(template, task, vocabulary, phase)
                one, two = encode(parts[0].strip()).encode(), encode(parts[1].strip()).encode()
                made[key] = EncodedConversation([*prompt, head + one + tail, second, head + two + tail], shape)
            except UnicodeEncodeError as error:
                raise orjson.JSONEncodeError(f"str is not valid UTF-8: {error.reason}") from None
        return made

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
