"""Boxes written in an answer, in any of the text forms models use, decoded with the model's configured
convention and fitted to the frame.

Forms: JSON (``{"bbox_2d": [...], "label": ...}``, a list of those, bare ``[x1, y1, x2, y2]`` or
``[[...], [...]]``, often in a ```json fence), ``(x1,y1),(x2,y2)``,
``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``.
JSON is decoded first; text that is not valid JSON (truncated, single quotes) is scanned by pattern.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from models.boxes import CONVENTIONS, BoxError, fit_box
from models.parsing.result import ParsedBox

MAX_BOXES = 100
_MAX_NODES = 10_000  # JSON values visited per answer
_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d", "bbox2d", "bounding_box", "go_zone", "gozone", "coordinates")
_LABEL_KEYS = ("label", "name", "class", "category", "object")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER = re.compile(rf"^{_NUM}$")
_JSON_START = re.compile(r"[\[{]")
_DECODER = json.JSONDecoder()
_MAX_JSON_VALUES = 1000
_FENCE_OPEN = re.compile(r"```[ \t]{0,4}[A-Za-z0-9_-]{0,12}[ \t]{0,4}\n?")
_SCAN = re.compile(
    r"(?:<\|object_ref_start\|>(?P<ref>[^<]{0,100})<\|object_ref_end\|>[ \t]{0,4})?"
    r"<\|box_start\|>(?P<token>[^<]{0,200})<\|box_end\|>"
    r"|\[[ \t]{0,4}\[(?P<l1>[^\[\]\n]{0,120})\][ \t]{0,4},[ \t]{0,4}\[(?P<l2>[^\[\]\n]{0,120})\][ \t]{0,4}\]"
    r"|\((?P<p1>[^()\n]{1,60})\)[ \t]{0,4}(?:,|to|and|-)?[ \t]{0,4}\((?P<p2>[^()\n]{1,60})\)"
    r"|\[(?P<flat>[^\[\]\n]{0,300})\]"
    r"|\((?P<paren>[^()\n]{0,120})\)")
_LABEL_NEAR = re.compile(r"""["']label["'][ \t]{0,4}:[ \t]{0,4}["'](?P<label>[^"'\n]{0,100})["']""")
_TOKEN_NUM = re.compile(_NUM)


class _Candidate:
    """Four values as written (numbers or not) with a label, before decoding; ``source`` (text or a JSON
    value) is what a warning quotes."""

    __slots__ = ("label", "source", "values")

    def __init__(self, values: list, label: str | None, source):
        self.values, self.label, self.source = values, label, source

    @property
    def text(self) -> str:
        if isinstance(self.source, str):
            return self.source
        try:
            return json.dumps(self.source)[:200]
        except (RecursionError, ValueError):
            return "a deeply nested value"


def read_boxes(answer: str, *, box_convention: str, width: int, height: int,
               input_size: tuple[int, int] | None) -> tuple[list[ParsedBox], list[str]]:
    """The boxes of an answer in canonical pixels, and warnings about each one changed or dropped."""
    warnings: list[str] = []
    candidates = _candidates(answer, warnings)
    decode = _decoder(box_convention, width, height, input_size)
    boxes: list[ParsedBox] = []
    for number, candidate in enumerate(candidates, start=1):
        box = _fit(number, candidate, decode, width, height, warnings)
        if box is not None:
            boxes.append(box)
    return boxes, warnings


def _decoder(box_convention: str, width: int, height: int,
             input_size: tuple[int, int] | None) -> Callable[[tuple], tuple]:
    decode = CONVENTIONS[box_convention][0]
    if box_convention == "qwen25_pixels":
        return lambda values: decode(values, width, height, input_size)
    return lambda values: decode(values, width, height)


def _fit(number: int, candidate: _Candidate, decode, width: int, height: int,
         warnings: list[str]) -> ParsedBox | None:
    values = candidate.values
    if len(values) != 4:
        warnings.append(f"box {number} is not four numbers ({_show(candidate.text)}); skipped")
        return None
    numbers = _finite(values)
    if numbers is None:
        shown = _show(candidate.text)
        warnings.append(f"box {number} has coordinates that are not finite numbers ({shown}); skipped")
        return None
    try:
        x1, y1, x2, y2 = decode(numbers)
    except (ArithmeticError, ValueError) as exc:  # e.g. a frame shape the Qwen processor refuses
        warnings.append(f"box {number} could not be decoded ({_show(candidate.text)}: {exc}); skipped")
        return None
    try:
        fitted = fit_box(x1, y1, x2, y2, width, height)
    except BoxError:
        shown = _show(candidate.text)
        if x1 == x2 or y1 == y2:
            warnings.append(f"box {number} has no area ({shown}); dropped")
        else:
            warnings.append(f"box {number} lies wholly outside the {width}x{height} frame ({shown}); dropped")
        return None
    if fitted.swapped:
        warnings.append(f"box {number} corners were swapped; reordered")
    if fitted.clipped:
        warnings.append(f"box {number} clipped to the frame")
    return ParsedBox(candidate.label, fitted.box.as_tuple(), clipped=fitted.clipped, swapped=fitted.swapped)


def _finite(values: list) -> tuple[float, ...] | None:
    """The values as floats, or None when one is not a number or not finite (NaN, inf, a 400-digit int)."""
    try:
        numbers = tuple(float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    except OverflowError:
        return None
    return numbers if len(numbers) == len(values) and all(map(math.isfinite, numbers)) else None


def _show(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


# --- finding candidates ---------------------------------------------------------------------------

def _candidates(answer: str, warnings: list[str]) -> list[_Candidate]:
    """JSON values of the answer (inside a code fence when there is one) walked for boxes; when some text
    is not valid JSON, or JSON holds no box, the whole text is scanned by pattern instead."""
    text = answer
    fence = _FENCE_OPEN.search(answer)
    if fence:
        end = answer.find("```", fence.end())
        if end < 0:
            warnings.append("unclosed code fence in answer")
        text = answer[fence.end():end if end >= 0 else len(answer)]
    found: list[_Candidate] = []
    position, failed = 0, False
    for _ in range(_MAX_JSON_VALUES):
        start = _JSON_START.search(text, position)
        if start is None:
            break
        try:
            data, position = _DECODER.raw_decode(text, start.start())
        except (ValueError, RecursionError):
            failed = True
            if fence or not text[:start.start()].strip():
                warnings.append("malformed or truncated JSON in answer; boxes read by pattern")
            break
        _walk(data, None, found, [0], 0)
    if failed or not found:
        found = _scan(text)
    return _capped(found, warnings)


def _capped(found: list[_Candidate], warnings: list[str]) -> list[_Candidate]:
    if len(found) > MAX_BOXES:
        warnings.append(f"more than {MAX_BOXES} boxes; kept the first {MAX_BOXES}")
        return found[:MAX_BOXES]
    return found


def _walk(node, label: str | None, found: list[_Candidate], visited: list[int], depth: int) -> None:
    """Collect the boxes of a decoded JSON value: dicts with a box key, flat 4-lists, point pairs."""
    visited[0] += 1
    if depth > 16 or visited[0] > _MAX_NODES or len(found) > MAX_BOXES:
        return
    if isinstance(node, dict):
        own = next((str(node[k]) for k in _LABEL_KEYS if isinstance(node.get(k), str)), label)
        keys = [k for k in node if isinstance(k, str) and k.lower() in _BOX_KEYS]
        if keys:
            for key in keys:
                _add_value(node[key], own, found)
            return
        for value in node.values():
            if isinstance(value, dict | list):
                _walk(value, own, found, visited, depth + 1)
    elif isinstance(node, list):
        if _is_flat(node) or _is_point_pair(node):
            _add_value(node, label, found)
            return
        for item in node:
            if isinstance(item, dict | list):
                _walk(item, label, found, visited, depth + 1)


def _is_flat(node: list) -> bool:
    """Four scalars, at least two of them numbers: meant as a box even if some are not numbers."""
    return len(node) == 4 and not any(isinstance(v, dict | list) for v in node) and sum(
        isinstance(v, int | float) and not isinstance(v, bool) for v in node) >= 2


def _is_point_pair(node: list) -> bool:
    return len(node) == 2 and all(isinstance(p, list) and len(p) == 2 and not any(isinstance(v, dict | list)
                                                                                  for v in p) for p in node)


def _add_value(value, label: str | None, found: list[_Candidate], depth: int = 0) -> None:
    """A box key's value: four numbers, a point pair, or a list of boxes."""
    if len(found) > MAX_BOXES:
        return
    if isinstance(value, list) and _is_point_pair(value):
        found.append(_Candidate([*value[0], *value[1]], label, value))
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value) and depth < 3:
        for item in value[:MAX_BOXES + 1]:
            _add_value(item, label, found, depth + 1)
    elif isinstance(value, list):
        found.append(_Candidate(list(value), label, value))
    else:
        found.append(_Candidate([value], label, value))


def _scan(text: str) -> list[_Candidate]:
    """Boxes found by pattern in text that is not JSON: special tokens, point pairs, bare lists."""
    found: list[_Candidate] = []
    for match in _SCAN.finditer(text):
        if len(found) > MAX_BOXES:
            break
        groups = match.groupdict()
        if groups["token"] is not None:
            numbers = [float(n) for n in _TOKEN_NUM.findall(groups["token"])]
            found.append(_Candidate(numbers, (groups["ref"] or "").strip() or None, match.group(0)))
            continue
        if groups["l1"] is not None:
            items = [_items(groups["l1"]), _items(groups["l2"])]
            if all(len(i) == 4 for i in items):
                label = _label_near(text, match.start(), match.end())
                found.extend(_Candidate(_values(i), label, match.group(0))
                             for i in items if _looks_numeric(i))
                continue
            items = [items[0] + items[1]]
        elif groups["p1"] is not None:
            items = [_items(groups["p1"]) + _items(groups["p2"])]
        else:
            items = [_items(groups["flat"] if groups["flat"] is not None else groups["paren"])]
        if len(items[0]) == 4 and _looks_numeric(items[0]):
            label = _label_near(text, match.start(), match.end())
            found.append(_Candidate(_values(items[0]), label, match.group(0)))
    return found


def _items(text: str) -> list[str]:
    return [item.strip().strip("\"'") for item in text.split(",")]


def _looks_numeric(items: list[str]) -> bool:
    """Whether a bracketed group is meant as coordinates: at least two items are numbers."""
    return sum(1 for item in items if _NUMBER.match(item)) >= 2


def _values(items: list[str]) -> list:
    return [float(item) if _NUMBER.match(item) else item for item in items]


def _label_near(text: str, start: int, end: int) -> str | None:
    """The ``"label": "..."`` of the JSON object around a box read by pattern (before or after it)."""
    opened = text.rfind("{", max(0, start - 300), start)
    if opened < 0:
        return None
    closed = text.find("}", end, end + 300)
    match = _LABEL_NEAR.search(text, opened, closed if closed >= 0 else min(len(text), end + 300))
    return (match.group("label").strip() or None) if match else None
