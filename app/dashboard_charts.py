"""Plotly figures of the benchmark Dashboard: pure functions of the tables of review.metrics.leaderboard.
Values are fractions in the tables and shown in %; every bar carries its 95 % bootstrap interval."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.charts import _layout
from review.metrics.leaderboard import LABELS, LOWER_IS_BETTER

PERCENT = 100.0


def _bars(table: pd.DataFrame) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": ((table["hi"] - table["value"]).fillna(0) * PERCENT).tolist(),
        "arrayminus": ((table["value"] - table["lo"]).fillna(0) * PERCENT).tolist(),
    }


def leaderboard_figure(metrics: pd.DataFrame) -> go.Figure | None:
    """Per metric (higher is better ones), one bar per model with its interval."""
    shown = metrics[~metrics["metric"].isin(LOWER_IS_BETTER)] if not metrics.empty else metrics
    if shown.empty:
        return None
    figure = go.Figure()
    order = list(dict.fromkeys(shown["metric"]))
    for model, rows in shown.groupby("model", sort=True):
        rows = rows.set_index("metric").reindex(order).reset_index()
        figure.add_bar(
            x=[LABELS.get(m, m) for m in order],
            y=(rows["value"] * PERCENT).tolist(),
            name=model,
            error_y=_bars(rows),
        )
    figure.update_layout(barmode="group", yaxis_range=[0, 105])
    return _layout(figure, "Leaderboard (95 % bootstrap CI)", "%")


def breakdown_figure(table: pd.DataFrame, column: str, metric: str, title: str) -> go.Figure | None:
    """``metric`` per value of ``column`` (x) and model (bars), with intervals."""
    if table.empty or column not in table.columns:
        return None
    rows = table[table["metric"] == metric]
    if rows.empty:
        return None
    figure = go.Figure()
    for model, part in rows.groupby("model", sort=True):
        part = part.sort_values(column)
        figure.add_bar(
            x=part[column].astype(str).tolist(),
            y=(part["value"] * PERCENT).tolist(),
            name=model,
            error_y=_bars(part),
        )
    figure.update_layout(barmode="group")
    return _layout(figure, f"{LABELS.get(metric, metric)} {title}", "%")


def confusion_figure(counts: pd.DataFrame) -> go.Figure | None:
    """One heatmap per model: reference (rows) by predicted (columns), coloured by the share of the
    reference row, counts written in the cells."""
    if counts.empty:
        return None
    models = sorted(counts["model"].unique())
    labels = sorted(set(counts["reference"]) | set(counts["predicted"]) - {"(none)"})
    predicted = labels + (["(none)"] if (counts["predicted"] == "(none)").any() else [])
    figure = make_subplots(rows=1, cols=len(models), subplot_titles=models, horizontal_spacing=0.06)
    for index, model in enumerate(models, start=1):
        grid = (
            counts[counts["model"] == model]
            .pivot_table(index="reference", columns="predicted", values="count", aggfunc="sum", fill_value=0)
            .reindex(index=labels, columns=predicted, fill_value=0)
        )
        share = grid.div(grid.sum(axis=1).where(lambda s: s > 0, 1), axis=0)
        figure.add_trace(
            go.Heatmap(
                z=share.to_numpy().tolist(),
                x=predicted,
                y=labels,
                text=grid.to_numpy().tolist(),
                texttemplate="%{text}",
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=index == len(models),
                hovertemplate="reference %{y}<br>predicted %{x}<br>%{text} cases" "<extra></extra>",
            ),
            row=1,
            col=index,
        )
        figure.update_xaxes(title_text="predicted", row=1, col=index)
    figure.update_yaxes(title_text="reference", autorange="reversed", row=1, col=1)
    figure = _layout(figure, "Confusion matrix (colour: share of the reference class)", "")
    figure.update_layout(height=380)
    return figure


def iou_figure(rows: pd.DataFrame) -> go.Figure | None:
    """Distribution of the IoU with the reference Go Zone per model (a missing box counts as 0), with the
    0.25 and 0.5 thresholds marked."""
    if rows.empty or "iou" not in rows.columns:
        return None
    scored = rows[rows["iou"].notna()]
    if scored.empty:
        return None
    figure = go.Figure()
    for model, part in scored.groupby("model", sort=True):
        figure.add_histogram(
            x=part["iou"].tolist(), name=model, xbins={"start": 0, "end": 1.0001, "size": 0.05}, opacity=0.6
        )
    figure.update_layout(barmode="overlay", xaxis_range=[0, 1], xaxis_title="IoU")
    for threshold in (0.25, 0.5):
        figure.add_vline(x=threshold, line_dash="dot", line_color="#888")
    return _layout(figure, "IoU with the reference Go Zone", "predictions")
