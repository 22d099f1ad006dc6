"""`surgreview metrics` as a user runs it on the demo pack: the table, CSV and JSON forms, the filters, an
atomic --out file, and clear refusals of a wrong task, format or run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from app.cli_metrics import metrics_cli
from tests.review_app import load_demo
from tests.web_helpers import make_services

MODELS = {"demo-surg-r1", "demo-surgo-r1", "demo-baseline"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("metrics-cli") / "data"
    services = make_services(folder)
    load_demo(services.db, services.frames)
    services.close()
    return folder


def _run(data_dir: Path, monkeypatch, *args: str):
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(data_dir))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    return CliRunner().invoke(metrics_cli, list(args))


def test_the_default_table_shows_every_grounding_metric_per_model(data_dir, monkeypatch):
    result = _run(data_dir, monkeypatch, "--boot", "100")
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.startswith("gozone leaderboard") and "100 rounds" in header
    columns = lines[0].split()
    assert set(columns) == MODELS and columns[0] == "demo-surgo-r1"  # best HA0.25 first
    labels = [line.split("  ")[0].strip() for line in lines[1:]]
    assert labels == [
        "Phase acc",
        "Acc@0.25",
        "mA@0.25:0.5",
        "CD",
        "mIoU",
        "C-Acc@0.25",
        "C-mA",
        "C-CD",
        "C-mIoU",
        "HA0.25",
        "HmIoU",
        "n",
    ]
    assert "[" in lines[1] and lines[-1].split()[1:] == ["16", "16", "16"]


def test_csv_with_filters_and_a_breakdown(data_dir, monkeypatch):
    result = _run(
        data_dir,
        monkeypatch,
        "--task",
        "phase",
        "--split",
        "test",
        "--tag",
        "synthetic",
        "--by",
        "dataset",
        "--format",
        "csv",
        "--boot",
        "50",
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.output))
    assert set(table["model"]) == MODELS and set(table["dataset"]) == {"demo"}
    assert {
        "accuracy",
        "accuracy_lo",
        "accuracy_hi",
        "macro_precision",
        "macro_recall",
        "macro_jaccard",
    } <= set(table.columns)
    assert (table["n"] == 8).all()


def test_json_written_atomically_to_a_file(data_dir, monkeypatch, tmp_path):
    out = tmp_path / "reports" / "arena.json"
    result = _run(
        data_dir,
        monkeypatch,
        "--task",
        "arena",
        "--format",
        "json",
        "--out",
        str(out),
        "--boot",
        "20",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["task"] == "arena" and document["bootstrap"] == {
        "rounds": 20,
        "seed": 3,
        "level": 0.95,
        "unit": "case",
    }
    assert {row["model"] for row in document["leaderboard"]} == MODELS
    assert {row["metric"] for row in document["metrics"]} == {"arena", "phase/demo"}
    assert [p.name for p in out.parent.iterdir()] == ["arena.json"]  # no temporary file left behind
    again = _run(data_dir, monkeypatch, "--task", "arena", "--format", "json", "--boot", "20", "--seed", "3")
    assert json.loads(again.output) == document  # deterministic given the database and seed


def test_wrong_options_are_refused_with_a_reason(data_dir, monkeypatch):
    result = _run(data_dir, monkeypatch, "--task", "dance")
    assert result.exit_code == 2 and "unknown task 'dance'" in result.output
    result = _run(data_dir, monkeypatch, "--format", "xml")
    assert result.exit_code == 2 and "table, csv, json" in result.output
    result = _run(data_dir, monkeypatch, "--run", "999999")
    assert result.exit_code == 2 and "There is no run 999999." in result.output
    result = _run(data_dir, monkeypatch, "--dataset", "nothing-here")
    assert result.exit_code == 1 and "no finished gozone predictions" in result.output
