"""``surgreview export ...`` as a user runs it, including an export process killed with SIGKILL while it
writes: no bundle appears under the target's name, and the next export removes the dead one's leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli import cli
from app.cli_export import export_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-export") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SURGREVIEW_DATA_DIR", str(folder))
        patch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
        result = CliRunner().invoke(cli, ["demo", "load"])
        assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def run(data_dir, monkeypatch):  # noqa: ANN201
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(data_dir))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    app = typer.Typer()
    app.add_typer(export_cli, name="export")
    return lambda *args: CliRunner().invoke(app, ["export", *args])


def test_sft_and_benchmark_from_the_command_line(run, tmp_path):
    result = run("sft", "--out", str(tmp_path / "sft"), "--target", "qwen3", "--split", "train")
    assert result.exit_code == 0, result.output
    assert "sft export: 8 rows, 8 images" in result.output
    manifest = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    assert manifest["filters"]["split"] == "train" and manifest["target"] == "qwen3"
    result = run("benchmark", "--out", str(tmp_path / "bench"), "--since", "2000-01-01")
    assert result.exit_code == 0 and "benchmark export: 16 rows" in result.output
    refused = run("sft", "--out", str(tmp_path / "sft"), "--target", "qwen3")
    assert refused.exit_code == 1 and "exists already" in refused.output
    bad = run("dpo", "--out", str(tmp_path / "dpo"), "--ties", "sometimes")
    assert bad.exit_code == 1 and "drop" in bad.output and not (tmp_path / "dpo").exists()
    empty = run("dpo", "--out", str(tmp_path / "dpo"))  # no study judged yet: an empty, valid bundle
    assert empty.exit_code == 0 and "dpo export: 0 rows" in empty.output


def test_labelme_and_coco_from_the_command_line_round_trip_through_the_importer(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"  # its own: the re-import below adds a dataset the other tests must not see
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(data_dir))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    assert CliRunner().invoke(cli, ["demo", "load"]).exit_code == 0

    def run(*args):  # noqa: ANN202
        return CliRunner().invoke(cli, ["export", *args])

    result = run("labelme", "--out", str(tmp_path / "lm"), "--dataset", "demo")
    assert result.exit_code == 0 and "labelme: 16 exported" in result.output, result.output
    files = sorted((tmp_path / "lm" / "demo").rglob("*.json"))
    assert len(files) == 16 and all(f.with_suffix(".png").exists() or f.with_suffix(".jpg").exists()
                                    for f in files)
    assert json.loads(files[0].read_text())["flags"]  # the phase travels in the flags
    result = run("coco", "--out", str(tmp_path / "coco"))
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert result.exit_code == 0 and len(coco["images"]) == 16 and len(coco["annotations"]) == 16
    again = run("coco", "--out", str(tmp_path / "coco"))
    assert again.exit_code == 1 and "error:" in again.output
    # Importing the LabelMe export into a fresh dataset name gives the same boxes and phases back.
    imported = CliRunner().invoke(cli, ["import", "labelme", str(tmp_path / "lm" / "demo"), "--dataset", "copy"])
    assert imported.exit_code == 0 and "16 imported" in imported.output, imported.output
    from sqlalchemy import select

    from app.settings import Settings
    from db.engine import Database
    from db.schema import Case, Label

    database = Database.from_url(Settings(data_dir=data_dir).database_url)
    with database.session_scope() as session:
        rows = session.execute(select(Case.dataset, Case.key, Label.phase, Label.box_x1, Label.box_y1, Label.box_x2,
                                      Label.box_y2).join(Label, Label.case_id == Case.id)
                               .where(Label.is_current)).all()
    database.dispose()
    by_dataset = {name: {(key.split("/", 1)[1], *rest) for dataset, key, *rest in rows if dataset == name}
                  for name in ("demo", "copy")}
    assert by_dataset["copy"] == by_dataset["demo"] and len(by_dataset["demo"]) == 16


KILLED_EXPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import typer
    from db import bundles
    from app.cli_export import export_cli

    real = bundles.Bundle.write_jsonl

    def write_then_hang(self, name, records):
        count = real(self, name, records)
        Path(sys.argv[1]).write_text(str(self.tmp))   # one file written: tell the test, then hang
        time.sleep(600)
        return count

    bundles.Bundle.write_jsonl = write_then_hang
    app = typer.Typer()
    app.add_typer(export_cli, name="export")
    app(["export", "sft", "--out", sys.argv[2], "--target", "qwen25"])
""")


def test_an_export_killed_while_writing_leaves_no_bundle(data_dir, run, tmp_path):
    out, ready = tmp_path / "exports" / "sft", tmp_path / "ready"
    env = {**os.environ, "SURGREVIEW_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    env.pop("SURGREVIEW_DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(ready), str(out)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the export never started writing"
        partial = Path(ready.read_text())
        assert (partial / "sft_trl.jsonl").is_file()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not out.exists()
    assert partial.exists() and partial.name.startswith(".sft.partial-")  # only a hidden temporary folder
    result = run("sft", "--out", str(out), "--target", "qwen25")
    assert result.exit_code == 0, result.output
    assert not partial.exists()  # the dead export's leftovers are removed
    assert sorted(p.name for p in out.parent.iterdir()) == ["sft"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == 16
