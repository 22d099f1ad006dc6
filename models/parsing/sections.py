"""The structure of one output: turns, <think> and <answer> regions, Levels 1-3 and the Go Zone rationale.

Every pattern is precompiled and has bounded repetition around its literals, so a megabyte of hostile text
costs a linear scan, never catastrophic backtracking. Tags are located with ``search`` from a position
rather than with one ``<think>(.*?)</think>`` pattern, which is quadratic when the closing tag is missing.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

TURN_SEPARATOR = "<|turn|>"
_TURN = re.compile(r"^[ \t]{0,16}<\|turn\|>[ \t]{0,16}$", re.MULTILINE)
_THINK_OPEN = re.compile(r"<[ \t]{0,3}think(?:ing)?[ \t]{0,3}>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<[ \t]{0,3}/[ \t]{0,3}think(?:ing)?[ \t]{0,3}>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<[ \t]{0,3}answer[ \t]{0,3}>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"<[ \t]{0,3}/[ \t]{0,3}answer[ \t]{0,3}>", re.IGNORECASE)
_BOLD = r"(?:\*\*|__)"
_FENCE = re.compile("```")
# "Answer: B", "**Final answer:** B", "- Answer - B" at the start of a line.
_ANSWER_LINE = re.compile(
    rf"^[ \t]{{0,8}}(?:[-*>#]{{1,6}}[ \t]{{0,4}})?{_BOLD}?[ \t]{{0,2}}(?:the[ \t]{{1,3}})?"
    r"(?:final[ \t]{1,3})?"
    rf"answer{_BOLD}?[ \t]{{0,4}}(?:is[ \t]{{0,4}})?{_BOLD}?[ \t]{{0,4}}[:\uff1a][ \t]{{0,4}}{_BOLD}?"
    r"[ \t]{0,4}"
    r"(?P<value>[^\n]*)", re.IGNORECASE | re.MULTILINE)
# "... so the answer is B." anywhere in a line.
_ANSWER_INLINE = re.compile(
    rf"\b(?:final[ \t]{{1,3}})?answer[ \t]{{1,4}}(?:is|would[ \t]{{1,3}}be)[ \t]{{0,4}}[:\uff1a]?[ \t]{{0,4}}"
    rf"{_BOLD}?"
    r"(?P<value>[^\n]+)", re.IGNORECASE)
# A markdown header "### Level 2: Relational understanding" (the separator is optional) ...
_LEVEL_HEADER = re.compile(
    rf"^[ \t]{{0,8}}\#{{1,6}}[ \t]{{0,4}}{_BOLD}?[ \t]{{0,2}}Level[ \t]{{0,2}}(?P<n>[1-3])\b[ \t]{{0,2}}"
    rf"(?:\([^)\n]{{0,80}}\))?[ \t]{{0,2}}{_BOLD}?[ \t]{{0,2}}[:\uff1a\-\u2013\u2014]?",
    re.IGNORECASE | re.MULTILINE)
# ... or "Level 1:", "Level 1 (Perceptual grounding):**", "Level 1 -" anywhere (bold markers around it are
# trimmed from the texts). It starts with the word so that the regex engine can skip ahead quickly.
_LEVEL = re.compile(
    rf"(?:[Ll]evel|LEVEL)[ \t]{{0,2}}(?P<n>[1-3])[ \t]{{0,2}}(?:\([^)\n]{{0,80}}\)[ \t]{{0,2}})?{_BOLD}?"
    r"[ \t]{0,2}"
    rf"(?:[:\uff1a]|[-\u2013\u2014](?![ \t]{{0,2}}\d))(?:[ \t]{{0,2}}{_BOLD})?")
_LEVEL_TITLE = re.compile(
    r"^[ \t]{0,4}(?:perceptual[ \t]{1,3}grounding|relational[ \t]{1,3}understanding"
    rf"|contextual[ \t]{{1,3}}reasoning){_BOLD}?[ \t]{{0,2}}(?:[:\uff1a\-\u2013\u2014]|\n|$)", re.IGNORECASE)
_TASK_LEVEL = re.compile(r"\bLevel[ \t-]{0,2}([1-3])[ \t]{1,3}task\b", re.IGNORECASE)
_RATIONALE = re.compile(
    r"(?:^|(?<=[.;!?>)\]])[ \t]{0,4})[ \t]{0,8}(?:[-*•+][ \t]{1,4}|\d{1,2}[.)][ \t]{0,4}|\#{1,6}[ \t]{0,4})?"
    rf"{_BOLD}?[ \t]{{0,2}}(?P<key>(?:go[ \t-]?zone[ \t]{{1,3}})?location"
    r"|exposure(?:[ \t]{1,3}(?:quality|assessment|"
    r"reasoning|adequacy))?|next[ \t]{1,3}(?:action|step)s?|critical[ \t]{1,3}risks?(?:[ \t]{1,3}reminder)?)"
    rf"[ \t]{{0,2}}{_BOLD}?[ \t]{{0,2}}(?:[:\uff1a]|(?=[ \t]{{0,4}}\n))[ \t]{{0,2}}{_BOLD}?",
    re.IGNORECASE | re.MULTILINE)
# A rationale value runs to the next part, or stops at a blank line, a tag, a code fence or a Level marker.
_RATIONALE_STOP = re.compile(r"\n[ \t]{0,16}\n|<[ \t]{0,3}/?[ \t]{0,3}(?:think|answer)|```|<\||"
                             r"\bLevel[ \t]{0,2}[1-3][ \t]{0,2}[:\uff1a]", re.IGNORECASE)


@dataclass
class TurnReading:
    """The regions of one turn: reasoning, answer, the text outside <think>, and what was odd."""

    thinking: str | None = None
    answer: str | None = None
    outside: str = ""  # the turn without its <think> region
    warnings: list[str] = field(default_factory=list)


def split_turns(text: str) -> list[str]:
    """The turns of ``text``, split on lines that are exactly ``<|turn|>`` (blank space around stripped)."""
    if TURN_SEPARATOR not in text:
        return [text.strip()]
    return [part.strip() for part in _TURN.split(text)]


def read_turn(text: str) -> TurnReading:
    """Find the reasoning and the answer of one turn, tolerating missing, unclosed and stray tags."""
    reading = TurnReading()
    thinking, outside, had_think = _split_think(text, reading.warnings)
    reading.outside = outside
    answer = _tagged_answer(outside, reading.warnings)
    if answer is None and thinking:
        answer = _tagged_answer(thinking, reading.warnings)
        if answer is not None:
            reading.warnings.append("answer found inside <think>")
    if answer is not None:
        if not had_think:  # the text before <answer> is the reasoning
            thinking = _ANSWER_OPEN.split(outside, maxsplit=1)[0].strip() or None
    else:
        answer, thinking = _untagged_answer(outside, thinking, had_think)
        if answer:
            reading.warnings.append("answer found outside <answer> tags")
    reading.thinking = (thinking.strip() or None) if thinking else None
    reading.answer = (answer.strip() or None) if answer is not None else None
    if answer is not None and reading.answer is None:
        reading.warnings.append("empty answer")
    return reading


def _last(matches: Iterator[re.Match]) -> re.Match | None:
    """The last of ``matches`` (consumed in one pass), or None."""
    last = None
    for last in matches:  # noqa: B007 - only the last one is wanted
        pass
    return last


def _split_think(text: str, warnings: list[str]) -> tuple[str | None, str, bool]:
    """(thinking, the rest, whether any think tag was seen)."""
    opened = _THINK_OPEN.search(text)
    closed = _THINK_CLOSE.search(text, opened.end() if opened else 0)
    if opened and closed:
        return text[opened.end():closed.start()], text[:opened.start()] + "\n" + text[closed.end():], True
    if opened:
        warnings.append("unclosed <think>")
        answer = _ANSWER_OPEN.search(text, opened.end())
        end = answer.start() if answer else len(text)
        return text[opened.end():end], text[:opened.start()] + "\n" + text[end:], True
    if closed:
        warnings.append("</think> without <think>")
        return text[:closed.start()], text[closed.end():], True
    return None, text, False


def _tagged_answer(text: str, warnings: list[str]) -> str | None:
    """The text of the last <answer> block of ``text``, or None when it has no answer tags."""
    last_open = _last(_ANSWER_OPEN.finditer(text))
    if last_open is not None:
        closed = _ANSWER_CLOSE.search(text, last_open.end())
        if closed:
            return text[last_open.end():closed.start()]
        warnings.append("unclosed <answer>")
        return text[last_open.end():]
    closed = _ANSWER_CLOSE.search(text)
    if closed:
        warnings.append("</answer> without <answer>")
        return text[:closed.start()]
    return None


def _untagged_answer(outside: str, thinking: str | None, had_think: bool) -> tuple[str | None, str | None]:
    """(answer, thinking) when there are no answer tags: a labelled "Answer:" line, the text after the
    reasoning, or - with no tags at all - the last paragraph of free-form text."""
    for source, is_thinking in ((outside, False), (thinking or "", True)):
        value, start = _labelled_answer(source)
        if value is not None:
            if not had_think and not is_thinking:
                thinking = source[:start].strip() or None
            return value, thinking
    rest = outside.strip()
    if had_think:
        return (rest or None), thinking
    if not rest:
        return None, None
    head, answer = _last_block(rest)
    return answer, head


def _labelled_answer(text: str) -> tuple[str | None, int]:
    """The value of the last "Answer:" line (or "the answer is ..."), and where its label starts."""
    if "answer" not in text.lower():
        return None, -1
    match = _last(_ANSWER_LINE.finditer(text)) or _last(_ANSWER_INLINE.finditer(text))
    if match is None:
        return None, -1
    value = match.group("value").strip()
    if not value.strip("*_ \t"):
        value = _following_block(text[match.end():])
    return value.strip().strip("*").strip(), match.start()


def _following_block(text: str) -> str:
    """The block after an empty "Answer:" line: a code fence, or the next paragraph."""
    text = text.lstrip("\n \t")
    if text.startswith("```"):
        end = text.find("```", 3)
        return text if end < 0 else text[:end + 3]
    return text.split("\n\n", 1)[0]


def _last_block(text: str) -> tuple[str | None, str]:
    """Free-form text split into (reasoning, final block): a trailing code fence or the last paragraph.
    A single paragraph is all answer (an answer-only baseline)."""
    if text.endswith("```"):
        fences = [m.start() for m in _FENCE.finditer(text)]
        if len(fences) >= 2 and len(fences) % 2 == 0 and fences[-2] > 0:
            return text[:fences[-2]].strip() or None, text[fences[-2]:]
    head, sep, tail = text.rpartition("\n\n")
    if not sep or not head.strip():
        return None, text
    return head.strip(), tail


# --- levels ---------------------------------------------------------------------------------------

def find_levels(thinking: str | None,
                ends: list[int] | tuple[int, ...] = ()) -> tuple[dict[int, str], list[int]]:
    """The text of each Level (from its marker to the next marker, the next of ``ends`` or the end) and the
    order of first appearance. A Level marked twice keeps both texts, joined."""
    if not thinking:
        return {}, []
    if "evel" not in thinking and "EVEL" not in thinking:
        return {}, []
    markers = _level_markers(thinking)
    ends = sorted(ends)
    texts: dict[int, list[str]] = {}
    order: list[int] = []
    for i, (_, end, level) in enumerate(markers):
        stop = markers[i + 1][0] if i + 1 < len(markers) else len(thinking)
        following = bisect_left(ends, end)
        if following < len(ends):
            stop = min(stop, ends[following])
        body = _LEVEL_TITLE.sub("", thinking[end:stop].strip(), count=1).strip()
        body = body.removeprefix("**").removeprefix("__").lstrip()
        body = body.removesuffix("**").removesuffix("__").removesuffix("#").rstrip()
        texts.setdefault(level, []).append(body)
        order.append(level)
    levels = {level: "\n".join(b for b in bodies if b) for level, bodies in texts.items()}
    return levels, order


def _level_markers(thinking: str) -> list[tuple[int, int, int]]:
    """(start, end, level) of every Level marker; a header line counts once."""
    headers = [(m.start(), m.end(), int(m.group("n"))) for m in _LEVEL_HEADER.finditer(thinking)] \
        if "#" in thinking else []
    inline = [(m.start(), m.end(), int(m.group("n"))) for m in _LEVEL.finditer(thinking)]
    if not headers:
        return inline
    starts = [start for start, _, _ in headers]

    def in_header(position: int) -> bool:
        index = bisect_right(starts, position) - 1
        return index >= 0 and position < headers[index][1]

    return sorted(headers + [m for m in inline if not in_header(m[0])])


def level_warnings(levels: dict[int, str], order: list[int], task_level: int | None, task: str,
                   expected: int) -> list[str]:
    """Out of order, repeated and missing Levels. Text without any Level is free-form: no warning,
    unless it says it is a Level N task."""
    warnings: list[str] = []
    if not levels:
        if task_level is not None:
            warnings.append(f"the reasoning says this is a Level {task_level} task but has no Level sections")
        return warnings
    firsts = list(dict.fromkeys(order))
    for earlier, later in pairwise(firsts):
        if earlier > later:
            warnings.append(f"Level {earlier} appears before Level {later}")
    for level in sorted(set(order)):
        if order.count(level) > 1:
            warnings.append(f"Level {level} appears {order.count(level)} times; texts joined")
    for level in range(1, (task_level or expected) + 1):
        if level not in levels:
            warnings.append(f"missing Level {level} for a {task} task")
    return warnings


def find_task_level(text: str | None) -> int | None:
    match = _TASK_LEVEL.search(text) if text else None
    return int(match.group(1)) if match else None


# --- Go Zone rationale ----------------------------------------------------------------------------

def find_rationale(text: str, warnings: list[str]) -> dict[str, str]:
    """The four Go Zone parts (location, exposure, next_action, critical_risk) from "Location: ..." lines;
    a value may span lines and ends at the next part, a blank line, a tag or a code fence."""
    if not _may_have_rationale(text):
        return {}
    markers = [(m.start(), m.end(), _rationale_key(m.group("key"))) for m in _RATIONALE.finditer(text)]
    rationale: dict[str, str] = {}
    repeats: dict[str, int] = {}
    for i, (_, end, key) in enumerate(markers):
        limit = markers[i + 1][0] if i + 1 < len(markers) else len(text)
        start = end + (len(text[end:limit]) - len(text[end:limit].lstrip()))
        stop = _RATIONALE_STOP.search(text, start, limit)
        value = text[start:stop.start() if stop else limit].strip().strip("*_").strip()
        if not value:
            continue
        if key in rationale:
            repeats[key] = repeats.get(key, 1) + 1
            continue
        rationale[key] = value
    warnings.extend(f"{key.replace('_', ' ')} given {count} times; kept the first"
                    for key, count in repeats.items())
    return rationale


def rationale_starts(text: str | None) -> list[int]:
    """Where each "Location:"-style part begins (a Level of a Go Zone output ends there)."""
    return [m.start() for m in _RATIONALE.finditer(text)] if text and _may_have_rationale(text) else []


def _may_have_rationale(text: str) -> bool:
    """A cheap test before the costly pattern: does any part title occur at all?"""
    lowered = text.lower()
    return any(word in lowered for word in ("location", "exposure", "next", "critical"))


def _rationale_key(label: str) -> str:
    word = label.lower().split()[-1] if label.lower().startswith("go") else label.lower().split()[0]
    return {"next": "next_action", "critical": "critical_risk"}.get(word, word)
