"""Case-resampling bootstrap shared by every benchmark metric: pure numpy, seeded.

A metric is a function of per-case SUMS (hits, counts, true positives ...). A bootstrap round draws the cases
with replacement; drawing case ``c`` k times adds k times its row, so each round's sums are one product
``weights @ rows`` with ``weights`` the (rounds, cases) draw counts. Rounds are drawn in fixed-size chunks
from ``np.random.default_rng(seed)``, so the same data and seed give the same intervals, and memory stays at
CHUNK x cases whatever the number of rounds.

The interval is the 95 % percentile interval of the rounds (NaN rounds, where a resample left a metric
without a denominator, are ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

CHUNK = 64
LEVEL = 95.0


@dataclass(frozen=True)
class RatioMetric:
    """mean of ``value`` over the rows where ``domain`` holds: sum(value * domain) / sum(domain)."""

    name: str
    value: str
    domain: str


@dataclass(frozen=True)
class Resampled:
    """A statistic's point estimate (columns,) and its bootstrap rounds (n_boot, columns)."""

    point: np.ndarray
    rounds: np.ndarray

    def interval(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): the 2.5 and 97.5 percentiles of the rounds; NaN without rounds."""
        if len(self.rounds) == 0:
            nan = np.full(self.point.shape, np.nan)
            return nan, nan
        tail = (100.0 - LEVEL) / 2
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(self.rounds).any(axis=0)
            lo = np.full(self.point.shape, np.nan)
            hi = np.full(self.point.shape, np.nan)
            if finite.any():
                lo[finite], hi[finite] = np.nanpercentile(
                    self.rounds[:, finite], [tail, 100.0 - tail], axis=0
                )
        return lo, hi


def case_weights(n_cases: int, n_boot: int, seed: int) -> list[np.ndarray]:
    """The bootstrap draws as chunks of (rounds, n_cases) counts; each round draws n_cases cases."""
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n_boot, CHUNK):
        rounds = min(CHUNK, n_boot - start)
        drawn = rng.integers(0, n_cases, size=(rounds, n_cases)) if n_cases else np.zeros((rounds, 0), int)
        offsets = (np.arange(rounds) * n_cases)[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=rounds * n_cases)
        chunks.append(counts.reshape(rounds, n_cases).astype(float))
    return chunks


def resample(
    sums: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *, n_boot: int, seed: int
) -> Resampled:
    """``statistic`` of the column sums of ``sums`` (cases, k) over all cases and over n_boot resamples of
    the cases. ``statistic`` maps (rounds, k) sums to (rounds, columns) values."""
    point = statistic(sums.sum(axis=0, keepdims=True))[0]
    rounds = [statistic(weights @ sums) for weights in case_weights(len(sums), n_boot, seed)]
    return Resampled(point, np.vstack(rounds) if rounds else np.empty((0, len(point))))


def group_codes(frame: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(code of each row's group, the groups in sorted order as a frame of the ``by`` columns)."""
    if not by:
        return np.zeros(len(frame), dtype=int), pd.DataFrame(index=[0])
    keys = frame[by].astype(object).where(frame[by].notna(), "(none)")
    groups = keys.drop_duplicates().sort_values(by, kind="stable").reset_index(drop=True)
    codes = keys.merge(groups.reset_index(names="_g"), on=by, how="left")["_g"].to_numpy()
    return codes, groups


def case_sums(cases: np.ndarray, columns: np.ndarray, values: np.ndarray, n_columns: int) -> np.ndarray:
    """(distinct cases, n_columns) sums of ``values`` added at (case of the row, ``columns``)."""
    case_index, _ = pd.factorize(cases, sort=True)
    n_cases = int(case_index.max()) + 1 if len(case_index) else 0
    flat = case_index * n_columns + columns
    return np.bincount(flat, weights=values, minlength=n_cases * n_columns).reshape(n_cases, n_columns)


def ratio_table(
    rows: pd.DataFrame,
    metrics: tuple[RatioMetric, ...],
    *,
    by: list[str],
    n_boot: int,
    seed: int,
    case: str = "case",
) -> tuple[pd.DataFrame, Resampled]:
    """Long table [*by, metric, value, lo, hi, n] of every RatioMetric per group of ``by``, resampling the
    ``case`` column; also the Resampled (columns ordered group-major, then metric) for combined scores."""
    codes, groups = group_codes(rows, by)
    n_groups, n_metrics = len(groups), len(metrics)
    width = n_groups * n_metrics
    all_cases = rows[case].to_numpy()
    # Every row's case is a bootstrap unit, also when no metric's domain holds for it (a zero at column 0).
    cases, columns, values = [all_cases], [np.zeros(len(rows), int)], [np.zeros(len(rows))]
    for m, metric in enumerate(metrics):
        domain = rows[metric.domain].to_numpy(dtype=bool)
        column = (codes * n_metrics + m)[domain]
        hits = rows[metric.value].to_numpy(dtype=float)[domain]
        cases += [all_cases[domain], all_cases[domain]]
        columns += [column, column + width]  # numerator, then denominator columns
        values += [hits, np.ones(len(column))]
    sums = case_sums(
        np.concatenate(cases), np.concatenate(columns).astype(int), np.concatenate(values), 2 * width
    )
    dens = sums[:, width:]

    def ratio(summed: np.ndarray) -> np.ndarray:
        num, den = summed[:, :width], summed[:, width:]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    result = resample(sums, ratio, n_boot=n_boot, seed=seed)
    lo, hi = result.interval()
    table = groups.loc[groups.index.repeat(n_metrics)].reset_index(drop=True)
    table["metric"] = [metric.name for metric in metrics] * n_groups
    table["value"], table["lo"], table["hi"] = result.point, lo, hi
    table["n"] = dens.sum(axis=0).astype(int)
    return table, result
