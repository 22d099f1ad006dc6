"""Surg-R1 task metrics: pure functions, DataFrame in, DataFrame out, 95 % intervals resampling cases.

Inputs have one row per (model, case) prediction with ``model`` and ``case`` and:
- phase and action: ``ref`` and ``pred`` class names (None: no reference / no readable answer);
- triplet: ``ref_triplets`` and ``pred_triplets``, lists of (instrument, verb, target) (reference None: none);
- CVS: ``ref_cvs`` and ``pred_cvs``, dicts of criterion (C1, C2, C3, overall) to truth (reference None: none).

| task | key | definition (over the samples that have a reference) |
|---|---|---|
| phase, action | accuracy | share whose predicted class equals the reference |
| | macro_precision | mean over classes of TP / predicted as the class (0 when never predicted) |
| | macro_recall | mean over classes of TP / reference of the class (0 when the class never occurs) |
| | macro_jaccard | mean over classes of TP / (TP + FP + FN) |
| triplet | triplet_acc | share whose SET of predicted triplets equals the reference set exactly (order and |
| | | repeats ignored; an empty reference is met by an empty answer only) |
| | instrument_acc, verb_acc, target_acc | the same for the sets of instruments, verbs, targets named |
| CVS | cvs_acc | share whose overall CVS (achieved only when C1, C2 and C3 all hold) equals the reference |
| | c1_acc, c2_acc, c3_acc | share whose answer on the criterion equals the reference (samples whose |
| | | reference has the criterion) |

Rules: the classes of the macro averages are those occurring in the sample as reference or prediction
(scikit-learn's ``average="macro"``, ``zero_division=0``); a missing or unreadable answer is wrong - it
counts against the recall of the reference class but is no class of its own. A CVS reference given as a
fraction (Endoscapes averages three annotators) holds when it is >= 0.5; a missing predicted criterion is
wrong. mAP (instrument, verb, target, triplet) needs per-class scores, which generated text does not have,
so it is not computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from review.metrics.bootstrap import RatioMetric, Resampled, case_sums, group_codes, ratio_table, resample

CLASSIFICATION = ("accuracy", "macro_precision", "macro_recall", "macro_jaccard")
TRIPLET_METRICS = (
    RatioMetric("triplet_acc", "triplet_correct", "has_ref"),
    RatioMetric("instrument_acc", "instrument_correct", "has_ref"),
    RatioMetric("verb_acc", "verb_correct", "has_ref"),
    RatioMetric("target_acc", "target_correct", "has_ref"),
)
CRITERIA = ("C1", "C2", "C3")
CVS_METRICS = (
    RatioMetric("cvs_acc", "cvs_correct", "has_ref_overall"),
    *(RatioMetric(f"c{i}_acc", f"c{i}_correct", f"has_ref_c{i}") for i in (1, 2, 3)),
)
LABELS = {
    "accuracy": "Accuracy",
    "macro_precision": "Macro precision",
    "macro_recall": "Macro recall",
    "macro_jaccard": "Macro Jaccard",
    "triplet_acc": "Triplet acc",
    "instrument_acc": "Instrument acc",
    "verb_acc": "Verb acc",
    "target_acc": "Target acc",
    "cvs_acc": "CVS acc",
    "c1_acc": "C1 acc",
    "c2_acc": "C2 acc",
    "c3_acc": "C3 acc",
}
_TRUE = {"yes", "true", "y", "1", "achieved", "met"}
_FALSE = {"no", "false", "n", "0", "not achieved", "not met"}


# --- phase and action: classification ---------------------------------------------------------------


def classification_metrics(
    frame: pd.DataFrame, *, by: list[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Long table [*by, metric, value, lo, hi, n] of accuracy and the macro precision, recall and Jaccard
    per group of ``by`` (default per model), over the rows with a reference."""
    return classification_resampled(frame, by=list(by or ["model"]), n_boot=n_boot, seed=seed)[0]


def classification_resampled(
    frame: pd.DataFrame, *, by: list[str], n_boot: int, seed: int
) -> tuple[pd.DataFrame, Resampled]:
    """``classification_metrics`` and its bootstrap rounds (columns in the table's row order)."""
    rows = frame[frame["ref"].notna()]
    classes = sorted(set(rows["ref"]) | set(rows["pred"].dropna()))
    codes, groups = group_codes(rows, by)
    n_classes, n_groups = len(classes), len(groups)
    ref = pd.Categorical(rows["ref"], categories=classes).codes
    pred = pd.Categorical(rows["pred"], categories=classes).codes  # -1: no readable answer
    base = codes * n_classes
    answered = pred >= 0
    hit = answered & (pred == ref)
    case = rows["case"].to_numpy()
    # Per case and (group, class): [true positives, predicted as the class, reference of the class].
    cases = np.concatenate([case[hit], case[answered], case])
    columns = np.concatenate([(base + ref)[hit] * 3, (base + pred)[answered] * 3 + 1, (base + ref) * 3 + 2])
    values = np.ones(len(columns))
    sums = case_sums(cases, columns.astype(int), values, n_groups * n_classes * 3)

    def statistic(summed: np.ndarray) -> np.ndarray:
        counts = summed.reshape(len(summed), n_groups, n_classes, 3)
        tp, predicted, support = counts[..., 0], counts[..., 1], counts[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = tp.sum(-1) / support.sum(-1)
            present = (support + predicted) > 0
            union = support + predicted - tp
            parts = [
                np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0),
                np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0),
                np.where(union > 0, tp / np.where(union > 0, union, 1), 0.0),
            ]
            macros = [(part * present).sum(-1) / present.sum(-1) for part in parts]
        return np.stack([accuracy, *macros], axis=-1).reshape(len(summed), n_groups * len(CLASSIFICATION))

    result = resample(sums, statistic, n_boot=n_boot, seed=seed)
    lo, hi = result.interval()
    table = groups.loc[groups.index.repeat(len(CLASSIFICATION))].reset_index(drop=True)
    table["metric"] = list(CLASSIFICATION) * n_groups
    table["value"], table["lo"], table["hi"] = result.point, lo, hi
    table["n"] = np.repeat(np.bincount(codes, minlength=n_groups), len(CLASSIFICATION)) if n_groups else []
    return table, result


def confusion(
    frame: pd.DataFrame, *, by: list[str] | None = None, ref: str = "ref", pred: str = "pred"
) -> pd.DataFrame:
    """Counts [*by, reference, predicted, count] of the rows with a reference (columns ``ref``, ``pred``);
    an unreadable answer is predicted "(none)"."""
    by = list(by or ["model"])
    rows = frame[frame[ref].notna()]
    rows = rows.assign(reference=rows[ref], predicted=rows[pred].where(rows[pred].notna(), "(none)"))
    return rows.groupby([*by, "reference", "predicted"]).size().rename("count").reset_index()


# --- triplets ----------------------------------------------------------------------------------------


def as_triplets(value: Any) -> frozenset[tuple[str, str, str]] | None:
    """A set of (instrument, verb, target) from a label or parsed answer: lists or tuples of three,
    {"instrument", "verb", "target"} dicts, or "instrument verb target" strings; None stays None."""
    if value is None:
        return None
    found = set()
    for item in value:
        if isinstance(item, dict):
            parts = [item.get("instrument"), item.get("verb"), item.get("target")]
        elif isinstance(item, str):
            parts = item.replace(",", " ").split()
        else:
            parts = list(item)
        if len(parts) == 3 and all(parts):
            found.add(tuple(str(p).strip().lower() for p in parts))
    return frozenset(found)


def score_triplets(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with has_ref and, per row, whether the triplet set and the instrument, verb and target sets
    equal the reference's (1.0 or 0.0)."""
    refs = [as_triplets(v) for v in frame["ref_triplets"]]
    preds = [as_triplets(v) or frozenset() for v in frame["pred_triplets"]]
    scores: dict[str, list[float]] = {
        "triplet_correct": [],
        "instrument_correct": [],
        "verb_correct": [],
        "target_correct": [],
    }
    for ref, pred in zip(refs, preds, strict=True):
        ref = ref or frozenset()
        scores["triplet_correct"].append(float(ref == pred))
        for index, name in enumerate(("instrument", "verb", "target")):
            scores[f"{name}_correct"].append(float({t[index] for t in ref} == {t[index] for t in pred}))
    return frame.assign(has_ref=[r is not None for r in refs], **scores)


def triplet_metrics(
    scored: pd.DataFrame, *, by: list[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Long table [*by, metric, value, lo, hi, n] of triplet and component accuracy (``score_triplets``)."""
    table, _ = ratio_table(scored, TRIPLET_METRICS, by=list(by or ["model"]), n_boot=n_boot, seed=seed)
    return table


# --- critical view of safety -------------------------------------------------------------------------


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return None if np.isnan(value) else bool(value >= 0.5)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def as_cvs(value: Any) -> dict[str, bool] | None:
    """{C1, C2, C3, overall} truths from a label or parsed answer (keys in any case; booleans, yes/no, or
    fractions of annotators, true at >= 0.5); overall derived when all three criteria are known."""
    if value is None:
        return None
    found: dict[str, bool] = {}
    for key, raw in dict(value).items():
        name = str(key).strip().upper()
        name = "overall" if name in {"OVERALL", "CVS"} else name
        if name in (*CRITERIA, "overall") and (truth := _truth(raw)) is not None:
            found[name] = truth
    if all(c in found for c in CRITERIA):
        found["overall"] = all(found[c] for c in CRITERIA)
    return found


def score_cvs(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with, per criterion and overall, whether the reference has it and whether the answer
    equals it (1.0 or 0.0; a missing answer is wrong)."""
    refs = [as_cvs(v) or {} for v in frame["ref_cvs"]]
    preds = [as_cvs(v) or {} for v in frame["pred_cvs"]]
    columns = {}
    for key, name in (("overall", "cvs"), *((c, c.lower()) for c in CRITERIA)):
        has = [key in ref for ref in refs]
        columns["has_ref_overall" if key == "overall" else f"has_ref_{name}"] = has
        columns[f"{name}_correct"] = [
            float(key in ref and pred.get(key) == ref[key]) for ref, pred in zip(refs, preds, strict=True)
        ]
    return frame.assign(**columns)


def cvs_metrics(
    scored: pd.DataFrame, *, by: list[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Long table [*by, metric, value, lo, hi, n] of overall and per-criterion CVS accuracy
    (rows from ``score_cvs``)."""
    table, _ = ratio_table(scored, CVS_METRICS, by=list(by or ["model"]), n_boot=n_boot, seed=seed)
    return table
