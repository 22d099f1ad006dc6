"""Plotly figures of quiz results for educators (and for a resident, of their own attempts): score over time,
the hardest cases, and the common phase confusions. Pure functions of the tables of
``review.teaching.results.TeachingResults``; None when there is nothing to draw."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

HARDEST = 15  # cases shown in the hardest-cases chart


def _layout(figure: go.Figure, title: str, y_title: str, x_title: str = "") -> go.Figure:
    figure.update_layout(title=title, yaxis_title=y_title, xaxis_title=x_title, template="plotly_white",
                         height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                         legend={"orientation": "h", "y": -0.2})
    return figure


def score_over_time_figure(timeline: pd.DataFrame) -> go.Figure | None:
    """Per resident: each attempt's hardcore IoU (markers) and its moving average (line), in attempt order."""
    if timeline.empty:
        return None
    figure = go.Figure()
    for resident, rows in timeline.groupby("resident", sort=True):
        figure.add_scatter(x=rows["n"].tolist(), y=rows["rolling"].tolist(), mode="lines", name=f"{resident}",
                           legendgroup=str(resident))
        figure.add_scatter(x=rows["n"].tolist(), y=rows["hardcore_iou"].tolist(), mode="markers",
                           name=f"{resident} attempts", legendgroup=str(resident), showlegend=False,
                           text=rows["case_key"].tolist(), hovertemplate="%{text}: %{y:.2f}<extra></extra>")
    figure.update_layout(yaxis_range=[-0.02, 1.02])
    return _layout(figure, "Score over time (hardcore IoU, moving average)", "hardcore IoU", "attempt")


def hardest_cases_figure(cases: pd.DataFrame, limit: int = HARDEST) -> go.Figure | None:
    """The ``limit`` hardest cases (lowest mean hardcore IoU of first attempts) with their phase accuracy."""
    if cases.empty:
        return None
    top = cases.head(limit)
    figure = go.Figure()
    figure.add_bar(x=top["case_key"].tolist(), y=top["mean_hardcore_iou"].astype(float).fillna(0).tolist(),
                   name="mean hardcore IoU")
    figure.add_bar(x=top["case_key"].tolist(), y=top["phase_accuracy"].astype(float).fillna(0).tolist(),
                   name="phase accuracy")
    figure.update_layout(barmode="group", yaxis_range=[0, 1.05])
    return _layout(figure, "Hardest cases (first attempts)", "share / IoU")


def phase_confusion_figure(confusions: pd.DataFrame) -> go.Figure | None:
    """A heatmap of how often each reference phase (rows) was answered as each phase (columns)."""
    if confusions.empty:
        return None
    matrix = confusions.pivot_table(index="reference_phase", columns="phase", values="count", aggfunc="sum",
                                    fill_value=0)
    labels = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=labels, columns=labels, fill_value=0)
    figure = go.Figure(go.Heatmap(z=matrix.values.tolist(), x=labels, y=labels, colorscale="Blues",
                                  text=matrix.values.tolist(), texttemplate="%{text}",
                                  hovertemplate="reference %{y}, answered %{x}: %{z}<extra></extra>"))
    figure.update_yaxes(autorange="reversed")
    return _layout(figure, "Phase confusions", "reference phase", "phase answered")
