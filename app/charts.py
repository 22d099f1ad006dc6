"""Plotly figures of a study's results (admin view): rates with 95 % intervals, Bradley-Terry scores with
intervals, per-level error rates. Pure functions of the tables of ``review.results.StudyResults``."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app.render import LEVEL_NAMES


def _error_bars(table: pd.DataFrame, point: str) -> dict:
    return {"type": "data", "symmetric": False, "array": (table["hi"] - table[point]).tolist(),
            "arrayminus": (table[point] - table["lo"]).tolist()}


def _layout(figure: go.Figure, title: str, y_title: str) -> go.Figure:
    figure.update_layout(title=title, yaxis_title=y_title, template="plotly_white", height=360,
                         margin={"l": 50, "r": 20, "t": 50, "b": 40}, legend={"orientation": "h", "y": -0.15})
    return figure


def rates_figure(selected: pd.DataFrame, accuracy: pd.DataFrame) -> go.Figure | None:
    """Per model: the selected ratio and the accuracy rating as bars with their 95 % bootstrap intervals."""
    if selected.empty and accuracy.empty:
        return None
    figure = go.Figure()
    for table, point, name in ((selected, "ratio", "selected ratio"),
                               (accuracy, "accuracy", "accuracy rating")):
        if not table.empty:
            figure.add_bar(x=table["model"].tolist(), y=table[point].tolist(), name=name,
                           error_y=_error_bars(table, point))
    figure.update_layout(barmode="group", yaxis_range=[0, 1.05])
    return _layout(figure, "Selected ratio and accuracy (95 % bootstrap CI)", "share")


def bradley_terry_figure(scores: pd.DataFrame) -> go.Figure | None:
    """Bradley-Terry ratings per model (centred on 1000) with their 95 % bootstrap intervals."""
    if scores.empty:
        return None
    figure = go.Figure(go.Scatter(x=scores["model"].tolist(), y=scores["rating"].tolist(), mode="markers",
                                  marker={"size": 12}, error_y=_error_bars(scores, "rating"), name="rating"))
    figure.add_hline(y=1000, line_dash="dot", line_color="#888")
    return _layout(figure, "Bradley-Terry from best picks (95 % bootstrap CI)", "rating")


def level_errors_figure(levels: pd.DataFrame) -> go.Figure | None:
    """Per model and reasoning level: the share of rated levels marked wrong."""
    if levels.empty:
        return None
    figure = go.Figure()
    for level, rows in levels.groupby("level"):
        figure.add_bar(x=rows["model"].tolist(), y=rows["error_rate"].tolist(),
                       name=LEVEL_NAMES.get(int(level), f"Level {level}"))
    figure.update_layout(barmode="group", yaxis_range=[0, 1.05])
    return _layout(figure, "Error rate per reasoning level", "share marked wrong")
