"""The model registry file and the `surgreview models` / `predict` commands on the tiny offline model."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from db.engine import Database
from db.schema import Prediction, Run
from models.registry import RegistryError, load_registry
from tests.tiny_models import build_tiny_qwen


def test_a_registry_declares_models_with_paths_relative_to_the_file(tmp_path):
    (tmp_path / "models.toml").write_text('''
[[models]]
name = "surg-r1"
backend = "transformers"
path = "weights/surg-r1"
adapter = "weights/lora"
family = "qwen2.5-vl"
box_convention = "qwen25_pixels"
quantization = "4bit"
color = "#1f77b4"
[models.generation]
max_new_tokens = 2048

[[models]]
name = "vllm-surgo"
backend = "openai"
url = "http://127.0.0.1:8000/v1"
remote_model = "SurGo-R1"
family = "qwen3-vl"
box_convention = "rel1000"
concurrency = 32
''')
    specs = load_registry(tmp_path / "models.toml")
    assert list(specs) == ["surg-r1", "vllm-surgo"]
    assert specs["surg-r1"].path == tmp_path / "weights/surg-r1"
    assert specs["surg-r1"].adapter == tmp_path / "weights/lora"
    assert (specs["surg-r1"].quantization, specs["surg-r1"].generation.max_new_tokens) == ("4bit", 2048)
    assert (specs["vllm-surgo"].concurrency, specs["vllm-surgo"].remote_model) == (32, "SurGo-R1")


def test_an_absent_registry_is_empty(tmp_path):
    assert load_registry(tmp_path / "none.toml") == {}


@pytest.mark.parametrize(("text", "message"), [
    ("[[models]\nname=", "not valid TOML"),
    ('[[models]]\nname = "a"\nbackend = "openai"\nbox_convention = "percent"\n', "model 'a': box_convention"),
    ('[[models]]\nname = "a"\nbackend = "openai"\ncolor = "red"\n', "color"),
    ('[[models]]\nname = "a"\nbackend = "x"\n[[models]]\nname = "a"\nbackend = "x"\n', "declared twice"),
    ('[[models]]\nname = "a b"\nbackend = "x"\n', "name"),
    ('[[models]]\nname = "a"\nbackend = "x"\ntemprature = 0.2\n', "temprature"),
])
def test_registry_errors_name_the_file_model_and_field(tmp_path, text, message):
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry(tmp_path / "models.toml")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    return tmp_path / "data"


def test_models_list_check_and_predict_through_the_cli(data_dir, tmp_path):
    tiny = build_tiny_qwen(tmp_path / "tiny", "qwen3-vl")
    data_dir.mkdir(parents=True)
    (data_dir / "models.toml").write_text(f'''
[[models]]
name = "tiny-surgo"
backend = "transformers"
path = "{tiny}"
family = "qwen3-vl"
box_convention = "rel1000"
[models.generation]
max_new_tokens = 8

[[models]]
name = "broken"
backend = "transformers"
path = "{tmp_path / 'nowhere'}"
''')
    runner = CliRunner()
    assert runner.invoke(cli, ["demo", "load"]).exit_code == 0
    listed = runner.invoke(cli, ["models", "list"]).output
    assert "tiny-surgo" in listed and "demo-surgo-r1" in listed and "replay" in listed
    checked = runner.invoke(cli, ["models", "check", "tiny-surgo", "broken"])
    assert checked.exit_code == 1
    assert "ok      tiny-surgo" in checked.output and "FAILED  broken: checkpoint folder" in checked.output

    first = runner.invoke(cli, ["predict", "--model", "tiny-surgo", "--task", "gozone", "--dataset", "demo",
                                "--limit", "3", "--batch-size", "2"])
    assert first.exit_code == 0, first.output
    assert "3 cases: 0 from cache, 3 predicted, 0 failed" in first.output
    again = runner.invoke(cli, ["predict", "--model", "tiny-surgo", "--task", "gozone", "--dataset", "demo",
                                "--limit", "3"])
    assert "3 cases: 3 from cache, 0 predicted" in again.output
    database = Database.from_url(f"sqlite:///{data_dir / 'surgreview.db'}")
    with database.session_scope() as session:
        run = session.scalars(select(Run).join(Run.model).where(Run.task == "gozone")
                              .where(Run.prompt_version == "gozone-phase-then-go-v1")).one()
        predictions = session.scalars(select(Prediction).where(Prediction.run_id == run.id)).all()
        assert len(predictions) == 3 and all("<|turn|>" in p.raw_text for p in predictions)
        assert all(p.parsed is not None and p.completion_tokens for p in predictions)
    database.dispose()


def test_predict_names_unknown_models_and_tasks(data_dir):
    runner = CliRunner()
    unknown_model = runner.invoke(cli, ["predict", "--model", "nope", "--task", "phase"])
    assert unknown_model.exit_code != 0 and "unknown model 'nope'" in unknown_model.output
    unknown_task = runner.invoke(cli, ["predict", "--model", "nope", "--task", "segmentation"])
    assert unknown_task.exit_code == 2 and "unknown task 'segmentation'" in unknown_task.output
