"""The Dashboard tab handlers called as Gradio calls them (with a gr.Request naming the user): blind reviewers
are refused on the server and get no filter choices; an educator gets the leaderboard, the five charts and a
CSV of the same leaderboard."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import pytest

from app.tabs import dashboard
from db.users import create_user
from tests.review_app import load_demo
from tests.web_helpers import PASSWORD, make_services

USERS = {
    "dash-educator": ("educator",),
    "dash-annotator": ("annotator",),
    "dash-reviewer": ("reviewer",),
    "dash-resident": ("resident",),
}
FILTERS = ("(any)", "(any)", "(any)")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("dashboard") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in USERS.items():
            create_user(session, name, password=PASSWORD, roles=roles)
    with gr.Blocks() as blocks:
        dashboard.build(services)
    handlers = {fn.fn.__qualname__: fn.fn for fn in blocks.fns.values() if fn.fn is not None}
    yield services, handlers
    services.close()


@pytest.mark.parametrize("user", ["dash-reviewer", "dash-resident"])
def test_users_without_a_dashboard_role_are_refused_and_get_no_choices(app, user):
    _, handlers = app
    with pytest.raises(gr.Error, match="needs the"):
        handlers["DashboardHandlers.compute"](gr.Request(username=user), "gozone", *FILTERS)
    assert all(
        update == gr.skip() for update in handlers["DashboardHandlers.populate"](gr.Request(username=user))
    )


def test_filter_choices_come_from_the_database(app):
    _, handlers = app
    dataset, split, tag = handlers["DashboardHandlers.populate"](gr.Request(username="dash-annotator"))
    assert [c[0] for c in dataset.choices] == ["(any)", "demo"]
    assert [c[0] for c in split.choices] == ["(any)", "test", "train"]
    assert [c[0] for c in tag.choices] == ["(any)", "synthetic"]


def test_the_go_zone_dashboard_has_the_leaderboard_charts_and_csv(app):
    _, handlers = app
    summary, table, overview, per_phase, per_dataset, matrix, ious, csv = handlers[
        "DashboardHandlers.compute"
    ](gr.Request(username="dash-educator"), "gozone", "demo", "test", "(any)")
    assert "demo-surgo-r1" in summary and "8 predictions scored" in summary
    assert set(table["model"]) == {"demo-surgo-r1", "demo-surg-r1", "demo-baseline"}
    assert table["h_acc25"].is_monotonic_decreasing  # best first
    assert {"h_acc25", "h_acc25_lo", "miou", "c_miou", "n"} <= set(table.columns) and (table["n"] == 8).all()
    for figure in (overview, per_phase, per_dataset, matrix, ious):
        assert isinstance(figure, go.Figure)
    assert {trace.name for trace in overview.data} == {"demo-surgo-r1", "demo-surg-r1", "demo-baseline"}
    assert {x for trace in per_phase.data for x in trace.x} <= set("ABCD")
    assert len([t for t in matrix.data if isinstance(t, go.Heatmap)]) == 3
    assert sum(len(trace.x) for trace in ious.data) == 3 * 8
    downloaded = pd.read_csv(Path(csv))
    pd.testing.assert_frame_equal(
        downloaded[["model", "n"]], table[["model", "n"]].reset_index(drop=True), check_dtype=False
    )


@pytest.mark.parametrize("task", ["phase", "arena", "triplet"])
def test_other_tasks_render_or_say_there_is_nothing_to_score(app, task):
    _, handlers = app
    summary, table, *figures, csv = handlers["DashboardHandlers.compute"](
        gr.Request(username="dash-educator"), task, *FILTERS
    )
    if task == "triplet":  # the demo pack has no triplet predictions
        assert "No finished predictions" in summary and table.empty and all(f is None for f in figures)
    else:
        assert len(table) == 3 and isinstance(figures[0], go.Figure)
    assert Path(csv).is_file()
