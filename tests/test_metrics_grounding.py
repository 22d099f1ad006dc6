"""Go Zone grounding metrics against hand computation: IoU equal to models.boxes.iou, the thresholds of mA,
normalized centre distance, the conditioned (right phase only) and hardcore (wrong phase = IoU 0) variants,
missing boxes as IoU 0, and seeded case-resampling bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.boxes import Box, iou
from review.metrics.bootstrap import case_weights
from review.metrics.grounding import box_iou, center_distance, grounding_metrics, score_grounding

NAN = float("nan")
REF = (0.0, 0.0, 10.0, 10.0)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (model, case, ref_phase, pred_phase, ref box or None, pred box or None); frames 30 x 40."""
    records = []
    for model, case, ref_phase, pred_phase, ref_box, pred_box in rows:
        ref_box, pred_box = ref_box or (NAN,) * 4, pred_box or (NAN,) * 4
        records.append(
            {
                "model": model,
                "case": case,
                "width": 30,
                "height": 40,
                "ref_phase": ref_phase,
                "pred_phase": pred_phase,
                **{f"ref_{c}": v for c, v in zip(("x1", "y1", "x2", "y2"), ref_box, strict=True)},
                **{f"pred_{c}": v for c, v in zip(("x1", "y1", "x2", "y2"), pred_box, strict=True)},
            }
        )
    return pd.DataFrame(records)


def _values(table: pd.DataFrame, model: str = "m") -> dict[str, float]:
    rows = table[table["model"] == model]
    return dict(zip(rows["metric"], rows["value"], strict=True))


coordinate = st.floats(min_value=0, max_value=500, allow_nan=False)


@given(
    st.lists(
        st.tuples(
            coordinate, coordinate, coordinate, coordinate, coordinate, coordinate, coordinate, coordinate
        ),
        min_size=1,
        max_size=20,
    )
)
def test_vectorized_iou_equals_the_box_iou_of_models(pairs):
    a = np.array([(min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]), max(p[1], p[3])) for p in pairs])
    b = np.array([(min(p[4], p[6]), min(p[5], p[7]), max(p[4], p[6]), max(p[5], p[7])) for p in pairs])
    expected = [iou(Box(*x), Box(*y)) for x, y in zip(a, b, strict=True)]
    assert box_iou(a, b) == pytest.approx(expected, abs=1e-12)


def test_iou_and_centre_distance_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [NAN, 0, 1, 1]], dtype=float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 1, 1]], dtype=float)
    ious = box_iou(a, b)
    assert ious[:3] == pytest.approx([50 / 150, 0.0, 1.0]) and math.isnan(ious[3])
    # Centres (5, 5) and (10, 5): 5 px apart on a 30 x 40 frame (diagonal 50).
    assert center_distance(a[:1], b[:1], np.array([30.0]), np.array([40.0])) == pytest.approx([0.1])


def test_every_metric_of_a_hand_computed_case_set():
    rows = _frame(
        [
            # right phase, IoU 50/150 = 1/3, centres 5 px apart (0.1 of the diagonal)
            ("m", 1, "A", "A", REF, (5, 0, 15, 10)),
            # wrong phase, perfect box: counts for Acc and mIoU, not for the conditioned or hardcore ones
            ("m", 2, "B", "A", REF, REF),
            # right phase, no box: IoU 0, centre distance 1
            ("m", 3, "C", "C", REF, None),
            # no phase read, IoU 0.3 exactly (box 0..10 x 0..3 inside the reference): passes t = 0.30
            ("m", 4, "D", None, REF, (0, 0, 10, 3)),
        ]
    )
    values = _values(grounding_metrics(score_grounding(rows), n_boot=0))
    third = 1 / 3
    assert values["phase_acc"] == pytest.approx(2 / 4)
    assert values["acc25"] == pytest.approx(3 / 4)
    # Acc@t for t = .25 .30 .35 .40 .45 .50: 3/4, 3/4, 1/4, 1/4, 1/4, 1/4
    assert values["ma"] == pytest.approx((3 + 3 + 1 + 1 + 1 + 1) / 4 / 6)
    assert values["miou"] == pytest.approx((third + 1 + 0 + 0.3) / 4)
    centre_4 = math.hypot(0, 5 - 1.5) / 50
    assert values["cd"] == pytest.approx((0.1 + 0 + 1 + centre_4) / 4)
    # Conditioned: cases 1 and 3 only.
    assert values["c_acc25"] == pytest.approx(1 / 2)
    assert values["c_ma"] == pytest.approx((2 / 6 + 0) / 2)
    assert values["c_miou"] == pytest.approx(third / 2)
    assert values["c_cd"] == pytest.approx((0.1 + 1) / 2)
    # Hardcore: the perfect box of case 2 sits under a wrong phase and counts as IoU 0; so does case 4.
    assert values["h_acc25"] == pytest.approx(1 / 4)
    assert values["h_miou"] == pytest.approx(third / 4)


def test_samples_without_a_reference_box_or_phase_leave_only_the_metrics_they_cannot_feed():
    rows = _frame(
        [("m", 1, "A", "A", None, (0, 0, 5, 5)), ("m", 2, None, "A", REF, REF), ("m", 3, "A", "B", REF, REF)]
    )
    table = grounding_metrics(score_grounding(rows), n_boot=0)
    counts = dict(zip(table["metric"], table["n"], strict=True))
    values = _values(table)
    assert counts["phase_acc"] == 2 and values["phase_acc"] == pytest.approx(0.5)
    assert counts["miou"] == 2 and values["miou"] == pytest.approx(1.0)
    assert counts["h_miou"] == 1 and values["h_miou"] == 0.0  # case 3: right box, wrong phase
    assert counts["c_miou"] == 0 and math.isnan(values["c_miou"])  # no case with a box and the right phase


def test_models_and_groups_are_scored_separately():
    rows = _frame(
        [
            ("a", 1, "A", "A", REF, REF),
            ("a", 2, "B", "B", REF, None),
            ("b", 1, "A", "B", REF, REF),
            ("b", 2, "B", "B", REF, REF),
        ]
    )
    scored = score_grounding(rows)
    table = grounding_metrics(scored, n_boot=0)
    assert _values(table, "a")["miou"] == 0.5 and _values(table, "b")["h_miou"] == 0.5
    per_phase = grounding_metrics(scored, by=["model", "ref_phase"], n_boot=0)
    b_phase_a = per_phase[(per_phase["model"] == "b") & (per_phase["ref_phase"] == "A")]
    assert dict(zip(b_phase_a["metric"], b_phase_a["value"], strict=True))["h_acc25"] == 0.0


def _random_rows(n_cases: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        for model in ("a", "b"):
            x, y = rng.uniform(0, 5, size=2)
            rows.append((model, case, "A", "A" if rng.random() < 0.7 else "B", REF, (x, y, x + 10, y + 10)))
    return _frame(rows)


def test_bootstrap_intervals_are_seeded_and_surround_the_point():
    scored = score_grounding(_random_rows(60, seed=1))
    first = grounding_metrics(scored, n_boot=300, seed=7)
    again = grounding_metrics(scored, n_boot=300, seed=7)
    other = grounding_metrics(scored, n_boot=300, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["lo"].to_numpy(), other["lo"].to_numpy(), equal_nan=True)
    finite = first.dropna(subset=["lo"])
    assert ((finite["lo"] <= finite["value"] + 1e-12) & (finite["value"] <= finite["hi"] + 1e-12)).all()
    assert (first.loc[first["metric"] == "miou", "hi"] > first.loc[first["metric"] == "miou", "lo"]).all()
    none = grounding_metrics(scored, n_boot=0)
    assert none["lo"].isna().all() and (none["value"] == first["value"]).all()


def test_bootstrap_resamples_whole_cases_each_round():
    chunks = case_weights(50, 130, seed=3)
    weights = np.vstack(chunks)
    assert weights.shape == (130, 50) and (weights.sum(axis=1) == 50).all()
    assert np.array_equal(weights, np.vstack(case_weights(50, 130, seed=3)))
