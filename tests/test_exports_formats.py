"""Pure pieces of the exports: chat-format builders, box conventions per target family, the Level-structured
target text, and the pair rules on crafted judgment sets (no database)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trl.data_utils import apply_chat_template, is_conversational, maybe_apply_chat_template

from models.boxes import Box, qwen25_to_canonical, rel1000_to_canonical, smart_resize
from models.chat_formats import (
    FormatError,
    dataset_info_entry,
    gozone_targets,
    level_target,
    sharegpt_ranking_row,
    sharegpt_row,
    target_box,
    task_conversation,
    trl_dpo_row,
    trl_kto_row,
    trl_messages_row,
)
from models.prompts import TURN_SEPARATOR
from models.vocabularies import load
from review.preferences import PairRules, common_prompt, output_votes, preference_pairs, verdicts

# --- box conventions -------------------------------------------------------------------------------------


@st.composite
def frames_and_boxes(draw):  # noqa: ANN001, ANN201
    width, height = draw(st.integers(64, 3840)), draw(st.integers(64, 2160))
    x1 = draw(st.floats(0, width - 1, allow_nan=False))
    y1 = draw(st.floats(0, height - 1, allow_nan=False))
    x2 = draw(st.floats(x1 + 0.5, width, allow_nan=False))
    y2 = draw(st.floats(y1 + 0.5, height, allow_nan=False))
    return width, height, Box(x1, y1, x2, y2)


@settings(max_examples=300, deadline=None)
@given(frames_and_boxes())
def test_qwen25_target_boxes_are_resized_input_pixels_that_decode_back(case):
    width, height, box = case
    coded = target_box(box, width, height, "qwen25")
    input_h, input_w = smart_resize(height, width)
    assert all(isinstance(v, int) for v in coded)
    assert 0 <= coded[0] <= coded[2] <= input_w and 0 <= coded[1] <= coded[3] <= input_h
    back = qwen25_to_canonical(tuple(coded), width, height)
    # Rounding to whole resized pixels moves a corner by at most half a resized pixel.
    tolerance = (0.5 * width / input_w + 1e-6, 0.5 * height / input_h + 1e-6)
    for i, (a, b) in enumerate(zip(back, box.as_tuple(), strict=True)):
        assert abs(a - b) <= tolerance[i % 2]


@settings(max_examples=300, deadline=None)
@given(frames_and_boxes())
def test_qwen3_target_boxes_are_relative_0_1000_that_decode_back(case):
    width, height, box = case
    coded = target_box(box, width, height, "qwen3")
    assert 0 <= coded[0] <= coded[2] <= 1000 and 0 <= coded[1] <= coded[3] <= 1000
    back = rel1000_to_canonical(tuple(coded), width, height)
    for i, (a, b) in enumerate(zip(back, box.as_tuple(), strict=True)):
        assert abs(a - b) <= 0.5 * (width if i % 2 == 0 else height) / 1000 + 1e-6


def test_known_conversions_of_a_cholec_frame():
    # An 854x480 frame is seen by Qwen2.5-VL as 840x476: the far corner maps to (840, 476).
    assert target_box(Box(0, 0, 854, 480), 854, 480, "qwen25") == [0, 0, 840, 476]
    assert target_box(Box(427, 240, 854, 480), 854, 480, "qwen3") == [500, 500, 1000, 1000]
    with pytest.raises(FormatError):
        target_box(Box(0, 0, 1, 1), 10, 10, "llava")


# --- target text -----------------------------------------------------------------------------------------


def test_level_target_orders_levels_and_falls_back_to_free_thinking():
    text = level_target({3: "phase B", 1: "a hook", 2: "hook dissects"}, "B")
    assert (
        text == "<think> Level 1: a hook Level 2: hook dissects Level 3: phase B </think><answer>B</answer>"
    )
    assert level_target({}, "B", "free thoughts") == "<think> free thoughts </think><answer>B</answer>"
    assert level_target({}, " B ") == "<answer>B</answer>"


def test_gozone_targets_write_the_four_parts_then_the_box():
    first, second = gozone_targets(
        "C",
        {"location": "duct", "exposure": "good", "next_action": "clip", "critical_risk": "CBD"},
        [1, 2, 3, 4],
    )
    assert first == "<answer>C</answer>"
    assert second == (
        "Location: duct\nExposure: good\nNext action: clip\nCritical risk: CBD\n"
        '<answer>[{"bbox_2d": [1, 2, 3, 4], "label": "go zone"}]</answer>'
    )


def test_two_turn_conversation_uses_the_inference_templates():
    resgo = load("resgo")
    conversation = task_conversation("gozone", resgo, ["<answer>B</answer>", "zone"], phase_id="B")
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]
    assert conversation[0]["content"][0] == {"type": "image"}
    assert resgo.phase("B").definition in conversation[2]["content"][0]["text"]
    assert TURN_SEPARATOR not in str(conversation)


# --- rows --------------------------------------------------------------------------------------------------


def _conversation() -> list[dict]:
    return task_conversation(
        "phase", load("cholec80"), ["<think> Level 1: x </think><answer>Preparation</answer>"]
    )


def test_sharegpt_rows_hold_one_image_tag_per_image():
    conversation = _conversation()
    row = sharegpt_row(conversation, ["images/a.png"])
    assert row["conversations"][0]["from"] == "human" and row["conversations"][0]["value"].startswith(
        "<image>"
    )
    assert sum(c["value"].count("<image>") for c in row["conversations"]) == len(row["images"]) == 1
    with pytest.raises(FormatError):
        sharegpt_row(conversation, [])
    with pytest.raises(FormatError):
        trl_messages_row(conversation, ["a.png", "b.png"])
    ranking = sharegpt_ranking_row(conversation[:1], conversation[1], conversation[1], ["a.png"])
    assert set(ranking) == {"conversations", "chosen", "rejected", "images"}
    assert ranking["chosen"]["from"] == "gpt"
    assert dataset_info_entry("r.jsonl", ranking=True)["ranking"] is True


def test_trl_helpers_read_the_rows(tiny_tokenizer):
    conversation = _conversation()
    prompt, completion = conversation[:1], conversation[1:]
    for row in (
        trl_dpo_row(prompt, completion, completion, ["a.png"]),
        trl_kto_row(prompt, completion, True, ["a.png"]),
        trl_messages_row(conversation, ["a.png"]),
    ):
        assert is_conversational(row)
        text = maybe_apply_chat_template({k: v for k, v in row.items() if k != "images"}, tiny_tokenizer)
        rendered = " ".join(v for v in text.values() if isinstance(v, str))
        assert rendered.count("<|image_pad|>") == 1
    dpo = apply_chat_template(
        {"prompt": prompt, "chosen": completion, "rejected": completion}, tiny_tokenizer
    )
    assert dpo["prompt"].endswith("<|im_start|>assistant\n") and "Preparation" in dpo["chosen"]


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from tests.tiny_models import build_tokenizer

    return build_tokenizer()


# --- pair rules --------------------------------------------------------------------------------------------


def _ratings(rows: list[tuple]) -> pd.DataFrame:
    """(case, model, reviewer, correct, best, level1) tuples -> a ratings frame as load_ratings makes it."""
    frame = pd.DataFrame(rows, columns=["case", "model", "reviewer", "correct", "best", "level1"])
    frame["item"] = frame["case"] + "/" + frame["reviewer"]
    frame["level2"] = frame["level3"] = None
    return frame


def _judged(rows: list[tuple], **rules) -> pd.DataFrame:
    return verdicts(output_votes(_ratings(rows)), PairRules(**rules)).set_index(["case", "model"])


CLEAR = [  # case c1: m1 best and correct for all three; m2 incorrect for two of three; m3 correct
    ("c1", "m1", "r1", 1, True, "correct"),
    ("c1", "m2", "r1", 0, False, "wrong"),
    ("c1", "m3", "r1", 1, False, "na"),
    ("c1", "m1", "r2", 1, True, "correct"),
    ("c1", "m2", "r2", 0, False, "wrong"),
    ("c1", "m3", "r2", 1, False, "na"),
    ("c1", "m1", "r3", 1, False, "wrong"),
    ("c1", "m2", "r3", 1, True, "correct"),
    ("c1", "m3", "r3", 1, False, "na"),
]


def test_majority_best_and_correct_is_chosen_majority_incorrect_is_rejected():
    judged = _judged(CLEAR)
    assert judged.loc[("c1", "m1"), "chosen"] and not judged.loc[("c1", "m1"), "rejected"]
    assert judged.loc[("c1", "m2"), "rejected"] and not judged.loc[("c1", "m2"), "chosen"]
    assert not judged.loc[("c1", "m3"), "chosen"] and not judged.loc[("c1", "m3"), "rejected"]  # never best
    assert list(judged["label"]) == [True, False, True]
    assert judged.loc[("c1", "m1"), "level1_label"] and not judged.loc[("c1", "m2"), "level1_label"]
    assert pd.isna(judged.loc[("c1", "m3"), "level1_label"])  # "na" marks decide nothing
    pairs = preference_pairs(judged.reset_index())
    assert pairs.to_dict("records") == [{"case": "c1", "chosen": "m1", "rejected": "m2"}]


def test_unanimity_drops_disagreements():
    judged = _judged(CLEAR, disagreements="drop")
    assert not judged["chosen"].any()  # m1 was best for two reviewers only
    assert not judged["rejected"].any() and pd.isna(judged.loc[("c1", "m2"), "label"])
    assert judged.loc[("c1", "m3"), "label"]  # all three agreed


TIED = [  # two reviewers split on both outputs
    ("c2", "m1", "r1", 1, True, "correct"),
    ("c2", "m2", "r1", 0, False, "wrong"),
    ("c2", "m1", "r2", 0, False, "wrong"),
    ("c2", "m2", "r2", 1, True, "correct"),
]


def test_ties_are_dropped_or_kept_as_incorrect():
    dropped = _judged(TIED)
    assert dropped["label"].isna().all() and not dropped["chosen"].any() and not dropped["rejected"].any()
    kept = _judged(TIED, ties="keep")
    # A 50/50 correctness vote counts as incorrect: both outputs are rejected, none can be chosen.
    assert list(kept["label"]) == [False, False] and kept["rejected"].all() and not kept["chosen"].any()
    assert not kept["level1_label"].any()
    assert preference_pairs(kept.reset_index()).empty


def test_minimum_reviewers():
    one = [("c3", "m1", "r1", 1, True, "correct"), ("c3", "m2", "r1", 0, False, "wrong")]
    assert _judged(one)["label"].isna().all()  # default: two reviewers needed
    judged = _judged(one, min_reviewers=1)
    assert preference_pairs(judged.reset_index()).to_dict("records") == [
        {"case": "c3", "chosen": "m1", "rejected": "m2"}
    ]
    with pytest.raises(Exception, match="at least 1"):
        PairRules(min_reviewers=0)


def test_common_prompt_ends_with_the_user_turn():
    resgo = load("resgo")
    same_phase = [task_conversation("gozone", resgo, ["<answer>B</answer>", t], "B") for t in ("x", "y")]
    assert common_prompt(*same_phase) == 3  # turn 1, its identical answer, the same turn-2 prompt
    other = task_conversation("gozone", resgo, ["<answer>C</answer>", "x"], "C")
    assert common_prompt(same_phase[0], other) == 1
