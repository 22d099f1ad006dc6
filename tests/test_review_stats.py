"""Review statistics (pure): hand-computed small cases, agreement against direct library calls,
Bradley-Terry on synthetic strong and weak models, seeded bootstrap intervals."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from review import stats

COLUMNS = ["item", "case", "reviewer", "model", "correct", "level1", "level2", "level3", "best"]


def _row(item, case, reviewer, model, correct, level1=None, best=False):  # noqa: ANN001, ANN202
    return (item, case, reviewer, model, correct, level1, None, None, best)


@pytest.fixture
def four_items() -> pd.DataFrame:
    """2 models, 4 items (one per case): m1 best twice, m2 once, none acceptable once."""
    rows = [
        _row(1, "c1", "R1", "m1", 1, "correct", True), _row(1, "c1", "R1", "m2", 0, "wrong"),
        _row(2, "c2", "R2", "m1", 1, "wrong"), _row(2, "c2", "R2", "m2", 1, "wrong", True),
        _row(3, "c3", "R1", "m1", 0, "na", True), _row(3, "c3", "R1", "m2", 0, "wrong"),
        _row(4, "c4", "R2", "m1", 0, None), _row(4, "c4", "R2", "m2", 1, "correct"),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _by_model(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["model"]: row for _, row in table.iterrows()}


def test_selected_ratio_by_hand(four_items):
    table = _by_model(stats.selected_ratio(four_items, n_boot=200, seed=1))
    assert (table["m1"]["items"], table["m1"]["selected"], table["m1"]["ratio"]) == (4, 2, 0.5)
    assert (table["m2"]["items"], table["m2"]["selected"], table["m2"]["ratio"]) == (4, 1, 0.25)


def test_accuracy_rating_by_hand(four_items):
    table = _by_model(stats.accuracy_rating(four_items, n_boot=200, seed=1))
    assert (table["m1"]["outputs"], table["m1"]["correct"], table["m1"]["accuracy"]) == (4, 2, 0.5)
    assert table["m2"]["accuracy"] == 0.5


def test_level_error_rates_leave_out_na_and_unmarked(four_items):
    table = stats.level_error_rates(four_items).set_index(["model", "level"])
    assert (table.loc[("m1", 1), "rated"], table.loc[("m1", 1), "wrong"]) == (2, 1)  # "na" and None left out
    assert table.loc[("m1", 1), "error_rate"] == 0.5
    assert table.loc[("m2", 1), "error_rate"] == 0.75
    assert ("m1", 2) not in table.index  # nobody marked level 2


def test_battles_best_beats_the_others_and_none_acceptable_ties(four_items):
    battles = stats.battles(four_items)
    assert battles.values.tolist() == [[1, "m1", "m2", "model_a"], [2, "m2", "m1", "model_a"],
                                       [3, "m1", "m2", "model_a"], [4, "m1", "m2", "tie"]]


def test_bradley_terry_by_hand(four_items):
    # m1 beats m2 2.5 times in 4 (the tie is half a win): P = 0.625, so the gap is 400 log10(0.625 / 0.375).
    table = _by_model(stats.bradley_terry(stats.battles(four_items), n_boot=100, seed=0))
    gap = 400 * math.log10(0.625 / 0.375)
    assert table["m1"]["rating"] == pytest.approx(1000 + gap / 2, abs=0.01)
    assert table["m2"]["rating"] == pytest.approx(1000 - gap / 2, abs=0.01)
    assert (table["m1"]["rank"], table["m2"]["rank"]) == (1, 2)


def _synthetic(n_items: int = 1500, seed: int = 0) -> pd.DataFrame:
    """3 models of true ratings 1200 / 1000 / 800 (Arena scale); the reviewer picks the best by pairwise
    Bradley-Terry strength, or none (10 %)."""
    rng = np.random.default_rng(seed)
    strength = {"strong": 10 ** (1200 / 400), "middle": 10 ** (1000 / 400), "weak": 10 ** (800 / 400)}
    total = sum(strength.values())
    accuracy = {"strong": 0.8, "middle": 0.5, "weak": 0.2}
    rows = []
    for item in range(n_items):
        shares = [s / total for s in strength.values()]
        pick = None if rng.random() < 0.1 else rng.choice(list(strength), p=shares)
        for model in strength:
            correct = int(rng.random() < accuracy[model])
            rows.append(_row(item, f"c{item // 3}", f"R{item % 3}", model, correct, best=model == pick))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_bradley_terry_orders_strong_over_weak_and_agrees_with_a_statsmodels_logistic_fit():
    battles = stats.battles(_synthetic())
    table = stats.bradley_terry(battles, n_boot=200, seed=3)
    assert list(table["model"]) == ["strong", "middle", "weak"]
    assert (table["lo"] <= table["rating"]).all() and (table["rating"] <= table["hi"]).all()
    # The same maximum likelihood from statsmodels: rows "a beats b" with +1/-1 columns, ties half each way.
    models = ["strong", "middle", "weak"]
    x, y, w = [], [], []
    for a, b, winner in battles[["model_a", "model_b", "winner"]].itertuples(index=False):
        row = np.zeros(3)
        row[models.index(a)], row[models.index(b)] = 1.0, -1.0
        for outcome, weight in ((1.0, 1.0), (0.0, 0.0)) if winner == "model_a" else ((1.0, 0.5), (0.0, 0.5)):
            x.append(row), y.append(outcome), w.append(weight)
    fit = sm.GLM(np.array(y), np.array(x)[:, 1:], family=sm.families.Binomial(),
                 var_weights=np.array(w)).fit()
    coefficients = np.concatenate([[0.0], fit.params]) * 400 / np.log(10)
    expected = coefficients - coefficients.mean() + 1000
    ours = table.set_index("model").loc[models, "rating"].to_numpy()
    np.testing.assert_allclose(ours, expected, atol=0.05)


@pytest.mark.parametrize("function", [stats.selected_ratio, stats.accuracy_rating])
def test_bootstrap_intervals_hold_the_estimate_and_are_seeded(function):
    data = _synthetic(600)
    first, again, other = (function(data, n_boot=300, seed=s) for s in (5, 5, 6))
    assert ((first["lo"] <= first.iloc[:, 3]) & (first.iloc[:, 3] <= first["hi"])).all()
    assert (first["lo"] < first["hi"]).all()
    pd.testing.assert_frame_equal(first, again)
    assert not first[["lo", "hi"]].equals(other[["lo", "hi"]])


def test_bradley_terry_intervals_are_seeded():
    battles = stats.battles(_synthetic(300))
    first = stats.bradley_terry(battles, n_boot=100, seed=1)
    again = stats.bradley_terry(battles, n_boot=100, seed=1)
    pd.testing.assert_frame_equal(first, again)
    assert not first["lo"].equals(stats.bradley_terry(battles, n_boot=100, seed=2)["lo"])


@pytest.fixture
def three_reviewers() -> pd.DataFrame:
    """4 cases x 2 models judged by R1, R2, R3 (R3 missed case c4), with some disagreement."""
    correct = {"R1": [1, 0, 1, 1, 0, 0, 1, 1], "R2": [1, 0, 1, 0, 0, 1, 1, 1], "R3": [1, 1, 1, 1, 0, 0]}
    best = {"R1": ["m1", "m2", None, "m1"], "R2": ["m1", "m2", "m1", "m2"], "R3": ["m1", None, None]}
    rows, item = [], 0
    for reviewer, marks in correct.items():
        for c in range(len(marks) // 2):
            item += 1
            for j, model in enumerate(("m1", "m2")):
                rows.append(_row(item, f"c{c + 1}", reviewer, model, marks[2 * c + j],
                                 best=best[reviewer][c] == model))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_agreement_on_correctness_matches_direct_library_calls(three_reviewers):
    table = stats.agreement(three_reviewers).set_index("measure")
    matrix = three_reviewers.pivot_table(index=["case", "model"], columns="reviewer",
                                         values="correct").to_numpy()
    complete = matrix[~np.isnan(matrix).any(axis=1)].astype(int)  # Fleiss needs every unit rated 3 times
    expected = fleiss_kappa(aggregate_raters(complete)[0])
    assert table.loc["correctness", "fleiss_kappa"] == pytest.approx(expected)
    assert table.loc["correctness", "fleiss_units"] == 6
    alpha = krippendorff.alpha(reliability_data=matrix.T, level_of_measurement="nominal")
    assert table.loc["correctness", "krippendorff_alpha"] == pytest.approx(alpha)


def test_agreement_on_best_pick_counts_none_acceptable_as_a_category(three_reviewers):
    table = stats.agreement(three_reviewers).set_index("measure")
    codes = {"(none acceptable)": 0, "m1": 1, "m2": 2}
    picks = {"R1": ["m1", "m2", "(none acceptable)", "m1"], "R2": ["m1", "m2", "m1", "m2"],
             "R3": ["m1", "(none acceptable)", "(none acceptable)", None]}
    data = np.array([[np.nan if p is None else codes[p] for p in picks[r]] for r in ("R1", "R2", "R3")])
    assert table.loc["best_pick", "krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    complete = data[:, :3].T.astype(int)
    expected = fleiss_kappa(aggregate_raters(complete)[0])
    assert table.loc["best_pick", "fleiss_kappa"] == pytest.approx(expected)


def test_reviewer_progress_counts_states_and_median_time():
    items = pd.DataFrame({"reviewer": ["R1", "R1", "R1", "R2", "R2"],
                          "state": ["judged", "judged", "skipped", "open", "judged"],
                          "time_spent_ms": [1000.0, 3000.0, np.nan, np.nan, 8000.0]})
    table = stats.reviewer_progress(items).set_index("reviewer")
    assert table.loc["R1", ["assigned", "judged", "skipped", "open"]].tolist() == [3, 2, 1, 0]
    assert table.loc["R1", "median_time_s"] == 2.0
    assert table.loc["R2", "done_share"] == 0.5
