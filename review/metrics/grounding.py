"""Go Zone grounding metrics (SurGo-R1 / ResGo): pure functions, DataFrame in, DataFrame out.

Input: one row per (model, case) prediction with ``model``, ``case``, ``width``, ``height`` of the frame,
the reference ``ref_phase`` and box ``ref_x1, ref_y1, ref_x2, ref_y2``, the predicted ``pred_phase`` and first
box ``pred_x1 .. pred_y2`` (NaN when the model gave none, or failed). Boxes are canonical pixel corners.

``score_grounding`` adds per-row scores; ``grounding_metrics`` aggregates them per model (or any grouping)
with 95 % bootstrap intervals that resample cases (see review.metrics.bootstrap).

| key | shown as | definition (over the samples named) |
|---|---|---|
| phase_acc | Phase acc | share of samples with a reference phase whose predicted phase equals it |
| acc25 | Acc@0.25 | share of samples with a reference box whose IoU >= 0.25 |
| ma | mA@0.25:0.5 | mean of Acc@t for t = 0.25, 0.30, ..., 0.50 (six thresholds) |
| cd | CD | mean distance between the box centres divided by the image diagonal (lower is better) |
| miou | mIoU | mean IoU |
| c_acc25, c_ma, c_cd, c_miou | C-... | the same, conditioned: only samples whose predicted phase is right |
| h_acc25 | HA0.25 | hardcore Acc@0.25: over all samples with a reference phase and box; a box under a |
| | | wrong (or missing) phase counts as IoU 0 |
| h_miou | HmIoU | hardcore mean IoU, same rule |

Rules: a missing predicted box (no box in the answer, unreadable answer, or a failed prediction) counts as
IoU 0 and as centre distance 1 (the whole diagonal, worse than any box inside the frame could be); a missing
predicted phase counts as wrong. Samples without a reference box are left out of the box metrics, samples
without a reference phase out of phase accuracy and the conditioned and hardcore metrics. A threshold is
met when IoU >= t - 1e-9 (so an IoU of exactly 0.3 passes 0.30 despite floating-point rounding).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from review.metrics.bootstrap import RatioMetric, ratio_table

THRESHOLDS = (0.25, 0.30, 0.35, 0.40, 0.45, 0.50)
EPSILON = 1e-9
CORNERS = ("x1", "y1", "x2", "y2")
REF_BOX = tuple(f"ref_{c}" for c in CORNERS)
PRED_BOX = tuple(f"pred_{c}" for c in CORNERS)

METRICS = (
    RatioMetric("phase_acc", "phase_correct", "has_ref_phase"),
    RatioMetric("acc25", "hit25", "has_ref_box"),
    RatioMetric("ma", "hit_mean", "has_ref_box"),
    RatioMetric("cd", "center_distance", "has_ref_box"),
    RatioMetric("miou", "iou", "has_ref_box"),
    RatioMetric("c_acc25", "hit25", "conditioned"),
    RatioMetric("c_ma", "hit_mean", "conditioned"),
    RatioMetric("c_cd", "center_distance", "conditioned"),
    RatioMetric("c_miou", "iou", "conditioned"),
    RatioMetric("h_acc25", "hard_hit25", "hardcore"),
    RatioMetric("h_miou", "hard_iou", "hardcore"),
)
LABELS = {
    "phase_acc": "Phase acc",
    "acc25": "Acc@0.25",
    "ma": "mA@0.25:0.5",
    "cd": "CD",
    "miou": "mIoU",
    "c_acc25": "C-Acc@0.25",
    "c_ma": "C-mA",
    "c_cd": "C-CD",
    "c_miou": "C-mIoU",
    "h_acc25": "HA0.25",
    "h_miou": "HmIoU",
}
LOWER_IS_BETTER = frozenset({"cd", "c_cd"})


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (n, 4) arrays of (x1, y1, x2, y2) corners; NaN where a row has a NaN corner.
    The same number as models.boxes.iou for every pair of boxes."""
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    result[np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)] = np.nan
    return result


def center_distance(a: np.ndarray, b: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Row-wise distance between the box centres divided by the image diagonal; NaN where a box is NaN."""
    dx = (a[:, 0] + a[:, 2] - b[:, 0] - b[:, 2]) / 2
    dy = (a[:, 1] + a[:, 3] - b[:, 1] - b[:, 3]) / 2
    return np.hypot(dx, dy) / np.hypot(width, height)


def score_grounding(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with per-sample scores added: phase_correct, iou, center_distance, hit25, hit_mean (share of
    thresholds met), hard_iou, hard_hit25, and the domain flags has_ref_phase, has_ref_box, conditioned,
    hardcore (module docstring for the rules)."""
    ref = frame[list(REF_BOX)].to_numpy(dtype=float)
    pred = frame[list(PRED_BOX)].to_numpy(dtype=float)
    has_ref_box = ~np.isnan(ref).any(axis=1)
    has_pred_box = ~np.isnan(pred).any(axis=1)
    iou = np.where(has_pred_box, box_iou(pred, ref), 0.0)
    distance = np.where(
        has_pred_box,
        center_distance(pred, ref, frame["width"].to_numpy(float), frame["height"].to_numpy(float)),
        1.0,
    )
    has_ref_phase = frame["ref_phase"].notna().to_numpy()
    phase_correct = has_ref_phase & (
        frame["pred_phase"].to_numpy(dtype=object) == frame["ref_phase"].to_numpy(dtype=object)
    )
    hits = np.stack([iou >= t - EPSILON for t in THRESHOLDS], axis=1)
    hard_iou = np.where(phase_correct, iou, 0.0)
    return frame.assign(
        has_ref_phase=has_ref_phase,
        has_ref_box=has_ref_box,
        has_pred_box=has_pred_box,
        conditioned=has_ref_box & phase_correct,
        hardcore=has_ref_box & has_ref_phase,
        phase_correct=phase_correct.astype(float),
        iou=np.where(has_ref_box, iou, np.nan),
        center_distance=np.where(has_ref_box, distance, np.nan),
        hit25=hits[:, 0].astype(float),
        hit_mean=hits.mean(axis=1),
        hard_iou=np.where(has_ref_box, hard_iou, np.nan),
        hard_hit25=(hard_iou >= THRESHOLDS[0] - EPSILON) * 1.0,
    )


def grounding_metrics(
    scored: pd.DataFrame, *, by: list[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Long table [*by, metric, value, lo, hi, n] of every grounding metric (fractions; ``n`` = samples the
    metric was computed over) per group of ``by`` (default: per model), bootstrap over ``case``."""
    table, _ = ratio_table(scored, METRICS, by=list(by or ["model"]), n_boot=n_boot, seed=seed)
    return table
