"""Review statistics: pure functions over pandas DataFrames, seeded where they resample.

The input is the ``ratings`` frame: one row per rated output of a current judgment, with columns
``item`` (review item), ``case``, ``reviewer`` (pseudonym), ``model`` (name), ``correct`` (0/1),
``level1``..``level3`` ("correct", "wrong", "na" or None) and ``best`` (True for the output chosen best;
no row of an item is True when the reviewer found none acceptable).

Intervals are 95 % percentile bootstraps. Selected ratio and accuracy resample CASES (a case's reviews stay
together: they are not independent); Bradley-Terry resamples JUDGMENTS, each with all its comparisons. Both
draw from ``np.random.default_rng(seed)``, by counting how often each distinct row pattern is drawn
(a multinomial draw), which is the same distribution as drawing rows with replacement, and fast.

Bradley-Terry follows the Chatbot Arena recipe: a logistic fit of "a beats b" on +/-ln(10) design columns,
ratings = 400 * coefficient, here centred on a mean of 1000; ties count half a win each way. The best
output beats every other output of its item; "none acceptable" is a tie between every pair (Arena's
"tie (bothbad)"); two outputs that were not chosen are not compared.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

LEVELS = (1, 2, 3)
BT_SCALE, BT_BASE, BT_INIT = 400.0, 10.0, 1000.0


def selected_ratio(ratings: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model: items it appeared in, times chosen best, the ratio and its bootstrap interval (lo, hi)."""
    table = _case_bootstrap(ratings, "best", n_boot, seed)
    return table.rename(columns={"n": "items", "hits": "selected", "point": "ratio"})


def accuracy_rating(ratings: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model: outputs rated, rated correct, mean 0/1 correctness and its bootstrap interval (lo, hi)."""
    table = _case_bootstrap(ratings, "correct", n_boot, seed)
    return table.rename(columns={"n": "outputs", "hits": "correct", "point": "accuracy"})


def _case_bootstrap(ratings: pd.DataFrame, column: str, n_boot: int, seed: int) -> pd.DataFrame:
    """model, n, hits, point = hits / n, and the case-resampled 2.5 and 97.5 percentiles lo, hi."""
    values = ratings.assign(_v=ratings[column].astype(float))
    hits = values.pivot_table(index="case", columns="model", values="_v", aggfunc="sum", fill_value=0.0)
    counts = values.pivot_table(index="case", columns="model", values="_v", aggfunc="count", fill_value=0)
    num, den = hits.to_numpy(float), counts.reindex_like(hits).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = _resample_ratio(num, den, n_boot, seed)
        lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0) if n_boot else (np.nan, np.nan)
    n, k = den.sum(axis=0), num.sum(axis=0)
    return pd.DataFrame({"model": hits.columns, "n": n.astype(int), "hits": k.astype(int), "point": k / n,
                         "lo": lo, "hi": hi}).reset_index(drop=True)


def _resample_ratio(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, columns) ratios sum(num) / sum(den) over rows drawn with replacement."""
    patterns, weights = _patterns(np.hstack([num, den]))
    draws = _draws(weights, n_boot, seed)
    columns = num.shape[1]
    return (draws @ patterns[:, :columns]) / (draws @ patterns[:, columns:])


def _patterns(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows and how many times each occurs."""
    patterns, counts = np.unique(rows, axis=0, return_counts=True)
    return patterns, counts


def _draws(counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, patterns) counts of each pattern in resamples of the same size, with replacement."""
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    return rng.multinomial(total, counts / total, size=n_boot).astype(float)


def level_error_rates(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per model and level: outputs whose level was marked correct or wrong ("na" and unmarked left out),
    how many wrong, and the error rate wrong / marked."""
    rows = []
    for level in LEVELS:
        marks = ratings[["model", f"level{level}"]].rename(columns={f"level{level}": "mark"})
        marks = marks[marks["mark"].isin(["correct", "wrong"])]
        grouped = marks.groupby("model")["mark"]
        rows.append(pd.DataFrame({"level": level, "rated": grouped.size(),
                                  "wrong": grouped.apply(lambda s: int((s == "wrong").sum())).astype(int)}))
    table = pd.concat(rows).reset_index(names="model")
    table["error_rate"] = table["wrong"] / table["rated"]
    return table[["model", "level", "rated", "wrong", "error_rate"]].sort_values(["model", "level"],
                                                                                ignore_index=True)


def battles(ratings: pd.DataFrame) -> pd.DataFrame:
    """Pairwise outcomes of best picks: item, model_a, model_b, winner ("model_a" or "tie").
    The best beats every other output of its item (model_a = best); none acceptable = every pair ties."""
    frame = ratings[["item", "model", "best"]]
    best = frame[frame["best"].astype(bool)].drop_duplicates("item")[["item", "model"]]
    wins = frame[["item", "model"]].merge(best.rename(columns={"model": "model_a"}), on="item")
    wins = wins[wins["model"] != wins["model_a"]]
    wins = wins.rename(columns={"model": "model_b"}).assign(winner="model_a")
    unpicked = frame.loc[~frame["item"].isin(best["item"]), ["item", "model"]]
    ties = unpicked.merge(unpicked, on="item", suffixes=("_a", "_b"))
    ties = ties[ties["model_a"] < ties["model_b"]].assign(winner="tie")
    columns = ["item", "model_a", "model_b", "winner"]
    return pd.concat([wins[columns], ties[columns]]).sort_values("item", kind="stable", ignore_index=True)


def bradley_terry(battle_rows: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per model: Bradley-Terry rating (Arena scale, mean 1000), bootstrap interval (lo, hi) from resampled
    judgments, and rank (1 = best). ``battle_rows`` as made by ``battles``."""
    models = sorted(set(battle_rows["model_a"]) | set(battle_rows["model_b"]))
    size = len(models)
    item = pd.factorize(battle_rows["item"])[0]
    a = pd.Categorical(battle_rows["model_a"], categories=models).codes
    b = pd.Categorical(battle_rows["model_b"], categories=models).codes
    tie = (battle_rows["winner"] != "model_a").to_numpy()
    per_item = np.zeros((item.max() + 1 if len(item) else 0, size * size))
    np.add.at(per_item, (item, a * size + b), np.where(tie, 0.5, 1.0))  # a tie is half a win each way
    np.add.at(per_item, (item[tie], b[tie] * size + a[tie]), 0.5)
    patterns, counts = _patterns(per_item)
    fits = _fit_bt(np.vstack([counts @ patterns, _draws(counts, n_boot, seed) @ patterns]), size)
    point, boot = fits[0], fits[1:]
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0) if n_boot else (np.nan, np.nan)
    table = pd.DataFrame({"model": models, "rating": point, "lo": lo, "hi": hi})
    table["rank"] = table["rating"].rank(ascending=False, method="min").astype(int)
    return table.sort_values("rating", ascending=False, ignore_index=True)


def _fit_bt(wins: np.ndarray, size: int, ridge: float = 1e-6) -> np.ndarray:
    """Ratings (fits, models) from summed win weights wins[fit, a * size + b] (a beat b): weighted logistic
    maximum likelihood of every fit at once (the fits are independent, so one L-BFGS run over all of them
    solves each), the first model's coefficient fixed at 0 (the scale has no origin), then centred on
    BT_INIT. The tiny ridge keeps a model that won or lost everything finite."""
    w = wins.reshape(-1, size, size)
    fits, log_base = len(w), np.log(BT_BASE)

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        free = flat.reshape(fits, size - 1)
        beta = np.concatenate([np.zeros((fits, 1)), free], axis=1)
        margin = log_base * (beta[:, :, None] - beta[:, None, :])
        value = -(w * log_expit(margin)).sum() + ridge * (free ** 2).sum()
        pull = w * expit(-margin) * log_base  # -d(loss)/d(margin[a, b])
        grad = -(pull.sum(axis=2) - pull.sum(axis=1))
        return value, (grad[:, 1:] + 2 * ridge * free).ravel()

    result = minimize(loss, np.zeros(fits * (size - 1)), jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-9})
    beta = np.concatenate([np.zeros((fits, 1)), result.x.reshape(fits, size - 1)], axis=1)
    ratings = BT_SCALE * beta
    return ratings - ratings.mean(axis=1, keepdims=True) + BT_INIT


def agreement(ratings: pd.DataFrame) -> pd.DataFrame:
    """Inter-rater agreement on correctness (units: a case's output of one model) and on the best pick
    (units: a case; "none acceptable" is a category): Fleiss' kappa over the units rated by the most common
    number of reviewers, Krippendorff's alpha (nominal) over all units, with missing ratings allowed."""
    correctness = ratings.pivot_table(index=["case", "model"], columns="reviewer", values="correct",
                                      aggfunc="first")
    chosen = ratings[ratings["best"].astype(bool)].groupby("item")["model"].first()
    per_item = ratings.drop_duplicates("item")[["item", "case", "reviewer"]]
    per_item = per_item.assign(_pick=per_item["item"].map(chosen).fillna("(none acceptable)").astype(str))
    codes = {m: i for i, m in enumerate(sorted(per_item["_pick"].unique()))}
    best = per_item.assign(_code=per_item["_pick"].map(codes)).pivot_table(
        index="case", columns="reviewer", values="_code", aggfunc="first")
    rows = [{"measure": name, **_agreement_of(table.to_numpy(float))}
            for name, table in (("correctness", correctness), ("best_pick", best))]
    return pd.DataFrame(rows)


def _agreement_of(matrix: np.ndarray) -> dict[str, float | int]:
    """Fleiss' kappa and Krippendorff's alpha of a (units, raters) matrix of category codes (NaN: unrated)."""
    rated = (~np.isnan(matrix)).sum(axis=1)
    usable = matrix[rated >= 2]
    if len(usable) == 0:
        return {"units": 0, "fleiss_kappa": np.nan, "fleiss_units": 0, "krippendorff_alpha": np.nan}
    per_unit = np.bincount(rated[rated >= 2]).argmax()
    full = usable[(~np.isnan(usable)).sum(axis=1) == per_unit]
    slots = np.array([row[~np.isnan(row)] for row in full]).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):  # one category only: kappa is undefined (NaN)
        kappa = fleiss_kappa(aggregate_raters(slots)[0], method="fleiss") if len(slots) else np.nan
    try:
        alpha = krippendorff.alpha(reliability_data=usable.T, level_of_measurement="nominal")
    except ValueError:  # a single category in the data: agreement is undefined
        alpha = np.nan
    return {"units": len(usable), "fleiss_kappa": float(kappa), "fleiss_units": len(slots),
            "krippendorff_alpha": float(alpha)}


def reviewer_progress(items: pd.DataFrame) -> pd.DataFrame:
    """Per reviewer from an ``items`` frame (reviewer, state, time_spent_ms of the current judgment or NaN):
    assigned, judged, skipped, open, share done and the median seconds spent per judged item."""
    grouped = items.groupby("reviewer")
    table = pd.DataFrame({
        "assigned": grouped.size(),
        "judged": grouped["state"].apply(lambda s: int((s == "judged").sum())),
        "skipped": grouped["state"].apply(lambda s: int((s == "skipped").sum())),
        "median_time_s": grouped["time_spent_ms"].median() / 1000.0,
    })
    table["open"] = table["assigned"] - table["judged"] - table["skipped"]
    table["done_share"] = table["judged"] / table["assigned"]
    return table.reset_index()[["reviewer", "assigned", "judged", "skipped", "open", "done_share",
                                "median_time_s"]]
