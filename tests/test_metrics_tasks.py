"""Surg-R1 task metrics against hand computation: accuracy and macro precision, recall and Jaccard
(unreadable answers wrong but no class), triplet set and component accuracy, CVS overall and per criterion
(annotator fractions, derived overall), confusion counts and seeded bootstrap intervals."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from review.metrics.tasks import (
    as_cvs,
    as_triplets,
    classification_metrics,
    confusion,
    cvs_metrics,
    score_cvs,
    score_triplets,
    triplet_metrics,
)


def _values(table: pd.DataFrame, model: str = "m") -> dict[str, float]:
    rows = table[table["model"] == model]
    return dict(zip(rows["metric"], rows["value"], strict=True))


def _classes(ref: list, pred: list, model: str = "m") -> pd.DataFrame:
    return pd.DataFrame({"model": model, "case": range(len(ref)), "ref": ref, "pred": pred})


def test_accuracy_and_macro_scores_by_hand():
    frame = _classes(["x", "x", "y", "y", "z"], ["x", "y", "y", None, "x"])
    values = _values(classification_metrics(frame, n_boot=0))
    # x: TP 1, predicted 2, support 2; y: TP 1, predicted 2, support 2; z: TP 0, predicted 0, support 1.
    assert values["accuracy"] == pytest.approx(2 / 5)
    assert values["macro_precision"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert values["macro_recall"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert values["macro_jaccard"] == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)


def test_a_class_only_predicted_counts_in_the_macro_average_and_rows_without_reference_are_left_out():
    frame = _classes(["x", "x", None], ["x", "w", "x"])
    table = classification_metrics(frame, n_boot=0)
    values = _values(table)
    # Classes w (predicted once, never true) and x: precision (0 + 1) / 2, recall (0 + 1/2) / 2.
    assert values["accuracy"] == 0.5 and set(table["n"]) == {2}
    assert values["macro_precision"] == pytest.approx(0.5)
    assert values["macro_recall"] == pytest.approx(0.25)
    assert values["macro_jaccard"] == pytest.approx((0 + 1 / 2) / 2)


def test_classification_per_group_and_seeded_intervals():
    rng = np.random.default_rng(0)
    ref = rng.choice(list("abcd"), size=200)
    pred = np.where(rng.random(200) < 0.6, ref, rng.choice(list("abcd"), size=200))
    frame = pd.concat([_classes(list(ref), list(pred), "m1"), _classes(list(ref), list(ref), "m2")])
    table = classification_metrics(frame, n_boot=200, seed=5)
    pd.testing.assert_frame_equal(table, classification_metrics(frame, n_boot=200, seed=5))
    perfect = table[table["model"] == "m2"]
    assert (perfect["value"] == 1.0).all() and (perfect["lo"] == 1.0).all()
    noisy = table[(table["model"] == "m1") & (table["metric"] == "accuracy")].iloc[0]
    assert noisy["lo"] < noisy["value"] < noisy["hi"]
    assert noisy["value"] == pytest.approx(float(np.mean(ref == pred)))


def test_confusion_counts_unreadable_answers_as_none():
    counts = confusion(_classes(["x", "x", "y"], ["x", None, "x"]))
    assert sorted(map(tuple, counts[["reference", "predicted", "count"]].to_numpy().tolist())) == [
        ("x", "(none)", 1),
        ("x", "x", 1),
        ("y", "x", 1),
    ]


def test_triplet_forms_read_as_sets():
    assert as_triplets(None) is None
    assert as_triplets(
        [
            ["Grasper", "retract", "gallbladder"],
            {"instrument": "hook", "verb": "dissect", "target": "cystic_plate"},
            "grasper retract gallbladder",
        ]
    ) == {("grasper", "retract", "gallbladder"), ("hook", "dissect", "cystic_plate")}


def test_triplet_and_component_accuracy_by_hand():
    g = ("grasper", "retract", "gallbladder")
    h = ("hook", "dissect", "cystic_plate")
    frame = pd.DataFrame(
        {
            "model": "m",
            "case": range(5),
            "ref_triplets": [[g, h], [g], [], [h], None],
            "pred_triplets": [[h, g], [("grasper", "grasp", "gallbladder")], [], [], [g]],
        }
    )
    table = triplet_metrics(score_triplets(frame), n_boot=0)
    values = _values(table)
    # Case 1 exact (order ignored), case 2 verb wrong, case 3 empty = empty, case 4 missed;
    # case 5 has no reference.
    assert set(table["n"]) == {4}
    assert values["triplet_acc"] == pytest.approx(2 / 4)
    assert values["instrument_acc"] == pytest.approx(3 / 4)
    assert values["verb_acc"] == pytest.approx(2 / 4)
    assert values["target_acc"] == pytest.approx(3 / 4)


def test_cvs_reference_fractions_and_derived_overall():
    assert as_cvs({"C1": 0.67, "c2": 1, "C3": 0.33}) == {
        "C1": True,
        "C2": True,
        "C3": False,
        "overall": False,
    }
    assert as_cvs({"C1": "yes", "C2": True, "C3": 1.0}) == {
        "C1": True,
        "C2": True,
        "C3": True,
        "overall": True,
    }
    assert as_cvs({"overall": "no"}) == {"overall": False}
    assert as_cvs(None) is None


def test_cvs_accuracy_overall_and_per_criterion_by_hand():
    frame = pd.DataFrame(
        {
            "model": "m",
            "case": range(4),
            "ref_cvs": [
                {"C1": 1.0, "C2": 1.0, "C3": 1.0},  # achieved
                {"C1": 0.67, "C2": 0.33, "C3": 0.0},  # not achieved
                {"C1": 0.0, "C2": 0.0, "C3": 0.0},  # not achieved
                {"C1": 1.0},  # only C1 known: no overall reference
            ],
            "pred_cvs": [
                {"C1": True, "C2": True, "C3": True, "overall": True},
                {"C1": True, "C2": True, "C3": False, "overall": False},
                {},  # unreadable answer: every criterion wrong
                {"C1": False},
            ],
        }
    )
    table = cvs_metrics(score_cvs(frame), n_boot=0)
    values, counts = _values(table), dict(zip(table["metric"], table["n"], strict=True))
    assert counts == {"cvs_acc": 3, "c1_acc": 4, "c2_acc": 3, "c3_acc": 3}
    assert values["cvs_acc"] == pytest.approx(2 / 3)
    assert values["c1_acc"] == pytest.approx(2 / 4)
    assert values["c2_acc"] == pytest.approx(1 / 3)
    assert values["c3_acc"] == pytest.approx(2 / 3)


def test_empty_input_gives_empty_or_undefined_metrics():
    empty = _classes([], [])
    assert classification_metrics(empty, n_boot=10).empty
    frame = pd.DataFrame({"model": ["m"], "case": [1], "ref_triplets": [None], "pred_triplets": [[]]})
    table = triplet_metrics(score_triplets(frame), n_boot=10)
    assert len(table) == 4 and table["value"].isna().all() and (table["n"] == 0).all()
