"""The output parser on a corpus of realistic outputs (tests/parser_corpus: NAME.txt raw text, NAME.json its
configuration and expected fields), on random and huge text, and through the box codecs."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from models.boxes import Box, canonical_to_qwen25, canonical_to_rel1000
from models.parsing import TASKS, ParsedBox, ParsedOutput, parse_output
from models.vocabularies import load

CORPUS = Path(__file__).parent / "parser_corpus"
EXPECTED_KEYS = {"phase", "phase_raw", "answer", "answer_contains", "boxes", "box_flags", "box_labels",
                 "levels", "level_contains", "task_level", "rationale_keys", "rationale_contains", "triplets",
                 "cvs", "action", "thinking", "thinking_contains", "phase_thinking", "turns", "warnings"}


def load_corpus() -> list[tuple[str, str, dict]]:
    """(name, raw text, metadata) for every corpus item."""
    items = []
    for meta_path in sorted(CORPUS.glob("*.json")):
        raw = meta_path.with_suffix(".txt").read_bytes().decode("utf-8")
        items.append((meta_path.stem, raw, json.loads(meta_path.read_text(encoding="utf-8"))))
    return items


def parse_item(raw: str, meta: dict) -> ParsedOutput:
    vocabulary = load(meta["vocabulary"]) if meta["vocabulary"] else None
    input_size = tuple(meta["input_size"]) if meta["input_size"] else None
    return parse_output(raw, task=meta["task"], box_convention=meta["box_convention"], width=meta["width"],
                        height=meta["height"], vocabulary=vocabulary, input_size=input_size)


ITEMS = load_corpus()


def test_the_corpus_covers_every_task_and_form():
    assert len(ITEMS) >= 40
    assert {meta["task"] for _, _, meta in ITEMS} == set(TASKS)
    prefixes = {name.split("_")[0] for name, _, _ in ITEMS}
    assert {"surgr1", "surgo", "gpt", "baseline", "broken", "demo"} <= prefixes
    assert any("<|turn|>" in raw for _, raw, _ in ITEMS)


@pytest.mark.parametrize(("name", "raw", "meta"), ITEMS, ids=[name for name, _, _ in ITEMS])
def test_corpus_item(name, raw, meta):
    expect = meta["expect"]
    assert set(expect) <= EXPECTED_KEYS, f"unknown expectation keys {set(expect) - EXPECTED_KEYS}"
    out = parse_item(raw, meta)

    for key in ("phase", "phase_raw", "answer", "task_level", "action", "cvs"):
        if key in expect:
            assert getattr(out, key) == expect[key], key
    if "answer_contains" in expect:
        assert expect["answer_contains"] in out.answer
    if "triplets" in expect:
        assert [list(t) for t in out.triplets] == expect["triplets"]
    if "boxes" in expect:
        assert len(out.boxes) == len(expect["boxes"]), [b.box for b in out.boxes]
        for got, want in zip(out.boxes, expect["boxes"], strict=True):
            assert got.box == pytest.approx(tuple(want), abs=0.5)
            assert got.box[0] < got.box[2] and got.box[1] < got.box[3]
            assert 0 <= got.box[0] and 0 <= got.box[1]
            assert got.box[2] <= meta["width"] and got.box[3] <= meta["height"]
    if "box_flags" in expect:
        assert [[b.clipped, b.swapped] for b in out.boxes] == expect["box_flags"]
    if "box_labels" in expect:
        assert [b.label for b in out.boxes] == expect["box_labels"]
    if "levels" in expect:
        assert sorted(out.levels) == expect["levels"]
    for level, text in expect.get("level_contains", {}).items():
        assert text in out.levels[int(level)]
        assert not out.levels[int(level)].startswith(("Level", "**", "#"))
    if "rationale_keys" in expect:
        assert sorted(out.rationale) == expect["rationale_keys"]
    for key, text in expect.get("rationale_contains", {}).items():
        assert text in out.rationale[key]
    if "thinking" in expect:
        assert bool(out.thinking) == expect["thinking"]
    if "thinking_contains" in expect:
        assert expect["thinking_contains"] in out.thinking
    if "phase_thinking" in expect:
        assert bool(out.phase_thinking) == expect["phase_thinking"]
    if "turns" in expect:
        assert len(out.turns) == expect["turns"]

    # Warnings are exact: every expected one is said, and nothing else.
    wanted = expect.get("warnings", [])
    assert [w for w in wanted if not any(w in said for said in out.warnings)] == [], out.warnings
    assert [said for said in out.warnings if not any(w in said for w in wanted)] == []


@pytest.mark.parametrize(("name", "raw", "meta"), ITEMS, ids=[name for name, _, _ in ITEMS])
def test_corpus_item_survives_json(name, raw, meta):
    out = parse_item(raw, meta)
    stored = json.loads(json.dumps(out.to_json()))
    assert ParsedOutput.from_json(stored) == out


def test_two_turn_output_keeps_both_reasonings_and_the_turns():
    raw = next(raw for name, raw, _ in ITEMS if name == "surgo_gozone_B")
    out = parse_output(raw, task="gozone", box_convention="rel1000", width=1280, height=720)
    assert out.phase == "B" and "Of options A-D" in out.phase_thinking
    assert out.thinking.startswith("In the dissection phase") and "Of options" not in out.thinking
    assert out.turns[0].endswith("<answer>B</answer>") and out.turns[1].startswith("<think>In the dissection")


def test_to_json_shape_and_round_trip():
    out = ParsedOutput(thinking="t", phase_thinking="p", levels={1: "a", 3: "c"}, task_level=3, answer="x",
                       phase="B", phase_raw="(B)", triplets=[("grasper", "retract", "gallbladder")],
                       cvs={"C1": True, "C2": False, "C3": True, "overall": False}, action="Tying a knot",
                       boxes=[ParsedBox("go zone", (1.0, 2.0, 3.5, 4.25), clipped=True, swapped=False)],
                       rationale={"location": "here"}, turns=["a", "b"], warnings=["w"])
    data = out.to_json()
    assert data["levels"] == {"1": "a", "3": "c"}
    assert data["boxes"] == [{"label": "go zone", "box": [1.0, 2.0, 3.5, 4.25], "clipped": True,
                              "swapped": False}]
    assert data["triplets"] == [["grasper", "retract", "gallbladder"]]
    assert ParsedOutput.from_json(json.loads(json.dumps(data))) == out
    assert ParsedOutput.from_json({}) == ParsedOutput()


@pytest.mark.parametrize("raw", [None, "", " \n\t "])
def test_empty_output(raw):
    out = parse_output(raw, task="phase", box_convention="pixels", width=854, height=480)
    assert out == ParsedOutput(warnings=["empty output"])


def test_characters_that_cannot_be_stored_are_replaced():
    out = parse_output("<answer>B\x00\ud800</answer>", task="phase", box_convention="pixels", width=854,
                       height=480, vocabulary=load("resgo"))
    assert out.answer == "B\ufffd\ufffd" and out.phase == "B"
    assert "2 NUL or lone surrogate character(s) replaced by U+FFFD" in out.warnings


def test_configuration_errors_are_errors_not_warnings():
    with pytest.raises(ValueError, match="task"):
        parse_output("B", task="segmentation", box_convention="pixels", width=854, height=480)
    with pytest.raises(ValueError, match="convention"):
        parse_output("B", task="phase", box_convention="normalized", width=854, height=480)
    with pytest.raises(ValueError, match="frame size"):
        parse_output("B", task="phase", box_convention="pixels", width=0, height=480)


# --- box codecs through the parser ----------------------------------------------------------------

def _random_boxes(rng: random.Random, count: int, width: int, height: int) -> list[Box]:
    boxes = []
    for _ in range(count):
        x1, y1 = rng.uniform(0, width - 20), rng.uniform(0, height - 20)
        boxes.append(Box(x1, y1, rng.uniform(x1 + 10, width), rng.uniform(y1 + 10, height)))
    return boxes


@pytest.mark.parametrize("form", ["pairs", "json", "tokens", "list"])
def test_qwen25_pixels_round_trip_through_the_parser(form):
    rng = random.Random(25)
    for box in _random_boxes(rng, 200, 854, 480):
        x1, y1, x2, y2 = (round(v) for v in canonical_to_qwen25(box, 854, 480, (840, 476)))
        raw = {"pairs": f"({x1},{y1}),({x2},{y2})",
               "json": f'<answer>```json\n[{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "hook"}}]\n```'
                       "</answer>",
               "tokens": f"<answer><|box_start|>({x1},{y1}),({x2},{y2})<|box_end|></answer>",
               "list": f"[{x1}, {y1}, {x2}, {y2}]"}[form]
        out = parse_output(raw, task="localization", box_convention="qwen25_pixels", width=854, height=480,
                           input_size=(840, 476))
        assert len(out.boxes) == 1, out.warnings
        # Whole resized pixels: at most half an input pixel, scaled by 854/840 and 480/476, of error.
        assert out.boxes[0].box == pytest.approx(box.as_tuple(), abs=0.51)


def test_qwen25_input_size_from_the_processor_is_used():
    """The same numbers mean different boxes for a different resized input: the given size wins over the
    recomputed one (840x476 for 854x480)."""
    given = parse_output("(105,60),(210,119)", task="localization", box_convention="qwen25_pixels", width=854,
                         height=480, input_size=(420, 238))
    assert given.boxes[0].box == pytest.approx((213.5, 121.008, 427.0, 240.0), abs=0.01)
    recomputed = parse_output("(105,60),(210,119)", task="localization", box_convention="qwen25_pixels",
                              width=854, height=480)
    assert recomputed.boxes[0].box == pytest.approx((106.75, 60.504, 213.5, 120.0), abs=0.01)
    outside = parse_output("(420,238),(840,476)", task="localization", box_convention="qwen25_pixels",
                           width=854, height=480, input_size=(420, 238))
    assert outside.boxes == [] and any("wholly outside" in w for w in outside.warnings)


def test_rel1000_round_trip_through_the_parser():
    rng = random.Random(1000)
    for box in _random_boxes(rng, 200, 1280, 720):
        x1, y1, x2, y2 = (round(v) for v in canonical_to_rel1000(box, 1280, 720))
        raw = (f'<think>Phase B.</think><answer>[{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}], "label": "go zone"}}]'
               "</answer>")
        out = parse_output(raw, task="gozone", box_convention="rel1000", width=1280, height=720)
        assert out.boxes[0].box == pytest.approx(box.as_tuple(), abs=0.5 * 1.28 + 1e-9)


def test_float_coordinates_round_trip_exactly():
    box = Box(101.25, 40.5, 377.75, 301.125)
    x1, y1, x2, y2 = canonical_to_qwen25(box, 854, 480, (840, 476))
    out = parse_output(f"[{x1!r}, {y1!r}, {x2!r}, {y2!r}]", task="localization",
                       box_convention="qwen25_pixels", width=854, height=480, input_size=(840, 476))
    assert out.boxes[0].box == pytest.approx(box.as_tuple(), abs=1e-6)


# --- never raises -------------------------------------------------------------------------------------

_FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<think", "</answer", "<|turn|>", "\n<|turn|>\n",
    "Level 1:", "Level 2 -", "**Level 3 (Contextual reasoning):**", "### Level 1", "This is a Level 3 task",
    "Answer:", "Final answer: ", "**Answer:**", "Location:", "Exposure:", "Next action:", "Critical risk:",
    "```json\n", "```", "[", "]", "{", "}", "(", ")", ",", ":", ";", '"bbox_2d"', '"label": "go zone"',
    "[98, 50, 393, 298]", "(12,34),(56,78)", "<|box_start|>", "<|box_end|>", "NaN", "Infinity", "-1e999",
    "1e400", "null", "'fifty'", "B", "(C)", "Phase A", "Calot Triangle Dissection",
    "grasper retract gallbladder",
    "C1: yes", "no", "yes", "Tying a knot", "7", "\x00", "\x07", "\x1b[31m", "\r\n", "\r", "\t", "\u202e",
    "\ufeff", "\ufffd", "😀", "é", "<script>alert(1)</script>", "\\", "'", '"', "#", "*", "_", "-", " ", "\n",
    "\n\n", "Let me look at the image.",
]


def _garbage(rng: random.Random) -> str:
    shape = rng.randrange(4)
    if shape == 0:  # random code points: controls, any plane, lone surrogates (possible after JSON decoding)
        return "".join(chr(rng.choice([rng.randrange(0, 128), rng.randrange(128, 0xD800),
                                       rng.randrange(0xD800, 0xE000), rng.randrange(0xE000, 0x110000)]))
                       for _ in range(rng.randrange(200)))
    if shape == 1:  # shuffled fragments of real output forms
        return "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randrange(1, 60)))
    if shape == 2:  # a real corpus output, cut and spliced
        raw = rng.choice(ITEMS)[1]
        a, b = sorted(rng.randrange(len(raw) + 1) for _ in range(2))
        return raw[:a] + rng.choice(_FRAGMENTS) + raw[b:]
    numbers = [rng.choice(["1", "-5", "0.5", "999999", "nan", "x", "", "1e5", "3.", ".7"]) for _ in range(8)]
    template = rng.choice(["[{}]", "({},{}),({},{})", '{{"bbox_2d": [{}]}}', "<|box_start|>{}<|box_end|>"])
    return template.replace("{}", ", ".join(numbers[:rng.randrange(1, 8)]), rng.randrange(1, 4))


def test_parse_output_never_raises_on_garbage():
    rng = random.Random(20240501)
    conventions = ["qwen25_pixels", "rel1000", "pixels"]
    vocabularies = [None, load("resgo"), load("cholec80"), load("multibypass140"), load("sar_rarp50")]
    for i in range(3000):
        raw = _garbage(rng)
        out = parse_output(raw, task=TASKS[i % len(TASKS)], box_convention=conventions[i % 3],
                           width=rng.randrange(1, 4000), height=rng.randrange(1, 4000),
                           vocabulary=rng.choice(vocabularies),
                           input_size=rng.choice([None, (840, 476), (28, 28)]))
        assert isinstance(out, ParsedOutput)
        assert all(isinstance(w, str) for w in out.warnings)
        assert not any(w.startswith("parser error") for w in out.warnings), (raw, out.warnings)
        stored = json.dumps(out.to_json(), ensure_ascii=False)
        stored.encode("utf-8")  # storable: no lone surrogates (PostgreSQL also refuses NUL)
        assert "\\u0000" not in json.dumps(out.to_json())
        assert ParsedOutput.from_json(json.loads(stored)) == out


@pytest.mark.parametrize("depth", [5, 500, 980, 990, 5000])
def test_deeply_nested_json_is_refused_politely(depth):
    raw = '<answer>{"bbox_2d": ' + "[" * depth + "]" * depth + "}</answer>"
    out = parse_output(raw, task="gozone", box_convention="pixels", width=854, height=480)
    assert out.boxes == [] and not any(w.startswith("parser error") for w in out.warnings)


MEGABYTE = 1_000_000
HUGE_INPUTS = {
    "spaces": "x" + " " * MEGABYTE + "x",
    "letters": "a" * MEGABYTE,
    "open think": "<think>" * (MEGABYTE // 7),
    "open answer": "<answer>" * (MEGABYTE // 8),
    "levels": "Level 1: " * (MEGABYTE // 9),
    "level words": "Level " * (MEGABYTE // 6),
    "answer labels": "Answer: \n" * (MEGABYTE // 9),
    "brackets": "[" * MEGABYTE,
    "braces": "{" * MEGABYTE,
    "parens": "(" * MEGABYTE,
    "point pairs": "(1,2),(3,4)," * (MEGABYTE // 12),
    "boxes": '[{"bbox_2d": [1, 2, 3, 4]}, ' * (MEGABYTE // 27),
    "fences": "```" * (MEGABYTE // 3),
    "rationale": "Location: x. " * (MEGABYTE // 13),
    "triplets": "grasper retract gallbladder; " * (MEGABYTE // 29),
    "cvs": "C1: yes; " * (MEGABYTE // 9),
    "turns": "a\n<|turn|>\n" * (MEGABYTE // 11),
    "stars": "*" * MEGABYTE,
    "newlines": "x" + "\n" * MEGABYTE + "x",
    "nested lists": "[[[[[[[[[[" * (MEGABYTE // 10),
    "header levels": "### Level 1:\n" * (MEGABYTE // 13),
    "levels and parts": "<think>" + "Level 1: x. Location: y. " * (MEGABYTE // 25) + "</think>",
    "bad triplets": "x;" * (MEGABYTE // 2),
    "repeated parts": "A\n<|turn|>\n" + "Location: x.\n" * (MEGABYTE // 13),
    "json object chain": '{"a": ' * (MEGABYTE // 6),
    "long think": "<think> This is a Level 3 task. Level 1: " + "The grasper holds the gallbladder. " * 28_000
                  + "</think><answer>B</answer>",
}


@pytest.mark.parametrize("kind", sorted(HUGE_INPUTS))
def test_a_megabyte_of_text_parses_quickly(kind):
    raw = HUGE_INPUTS[kind]
    assert len(raw) >= 0.9 * MEGABYTE
    for task in TASKS:
        started = time.perf_counter()
        out = parse_output(raw, task=task, box_convention="rel1000", width=854, height=480,
                           vocabulary=load("cholec80") if task == "phase" else None)
        elapsed = time.perf_counter() - started
        assert elapsed < 1.5, f"{kind} as {task}: {elapsed:.2f} s"
        assert not any(w.startswith("parser error") for w in out.warnings)
        assert len(out.boxes) <= 100 and len(out.triplets) <= 100
        assert len(out.warnings) < 250, f"{kind} as {task}: {len(out.warnings)} warnings"
