"""Prediction JSONL import on real SQLite and PostgreSQL: replay models, runs reused, bad lines rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotation.importers import predictions
from annotation.importers.common import CaseMeta
from annotation.importers.frames import import_frames
from annotation.importers.predictions import import_predictions, params_sha256
from db.frames import FrameStore
from db.schema import AuditEvent, Case, Model, Prediction, Run
from tests.conftest import make_image_bytes

CASE_1, CASE_2 = "demo/video01/000001", "demo/video01/000002"


@pytest.fixture
def cases(session, store, tmp_path) -> tuple[str, str]:
    folder = tmp_path / "frames" / "video01"
    folder.mkdir(parents=True)
    for index in (1, 2):
        (folder / f"frame_{index:06d}.png").write_bytes(make_image_bytes(seed=index))
    assert len(import_frames(session, store, [tmp_path / "frames"], CaseMeta("demo")).imported) == 2
    return CASE_1, CASE_2


def line(case: str = CASE_1, model: str = "surgo-r1", raw: str = "<answer>B</answer>", **fields) -> dict:
    return {"case": case, "model": model, "raw": raw, "task": "gozone", **fields}


def write_jsonl(path: Path, *lines: dict | str) -> Path:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def counts(session) -> dict[str, int]:
    return {table.__name__: session.scalar(select(func.count()).select_from(table))
            for table in (Model, Run, Prediction)}


def test_imports_predictions_with_a_replay_model(session, cases, tmp_path):
    path = write_jsonl(tmp_path / "preds.jsonl",
                       line(latency_ms=812.5, prompt_tokens=900, completion_tokens=120,
                            params={"temperature": 0}),
                       line(CASE_2, raw="", error="timeout", params={"temperature": 0}))
    defaults = {"family": "qwen25", "box_convention": "qwen25_pixels"}
    summary = import_predictions(session, path, model_defaults=defaults)
    assert summary.imported == ["preds.jsonl:1", "preds.jsonl:2"] and summary.rejected == []
    model = session.scalar(select(Model))
    assert (model.name, model.backend, model.location) == ("surgo-r1", "replay", str(path))
    assert (model.family, model.box_convention) == ("qwen25", "qwen25_pixels")
    run = session.scalar(select(Run))
    assert (run.task, run.prompt_version, run.status) == ("gozone", "imported", "imported")
    assert run.source == str(path) and run.finished_at is not None
    assert run.params == {"temperature": 0} and run.params_sha256 == params_sha256({"temperature": 0})
    first, second = session.scalars(select(Prediction).order_by(Prediction.id)).all()
    assert (first.raw_text, first.latency_ms, first.prompt_tokens, first.completion_tokens, first.parsed) == (
        "<answer>B</answer>", 812.5, 900, 120, None)
    assert (first.case.key, second.case.key, second.error) == (CASE_1, CASE_2, "timeout")
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "import.predictions"))
    assert event.payload["imported"] == 2


def test_runs_are_reused_by_model_task_prompt_and_params(session, cases, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl",
                       line(CASE_1, params={"a": 1, "b": 2}), line(CASE_2, params={"b": 2, "a": 1}),
                       line(CASE_1, params={"a": 2}),
                       line(CASE_1, prompt_version="v2", params={"a": 1, "b": 2}),
                       line(CASE_1, task="phase", params={"a": 1, "b": 2}), line(CASE_1, model="qwen3-vl-8b"))
    summary = import_predictions(session, path)
    assert len(summary.imported) == 6, summary.render()
    assert counts(session) == {"Model": 2, "Run": 5, "Prediction": 6}
    shared = session.scalar(select(Run).where(Run.params_sha256 == params_sha256({"b": 2, "a": 1}),
                                              Run.prompt_version == "imported", Run.task == "gozone"))
    assert session.scalar(select(func.count()).where(Prediction.run_id == shared.id)) == 2
    again = import_predictions(session, write_jsonl(tmp_path / "q.jsonl", line(CASE_2, params={"a": 2})))
    assert len(again.imported) == 1 and counts(session)["Run"] == 5


def test_reimport_skips_duplicates(session, cases, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", line(CASE_1), line(CASE_2))
    import_predictions(session, path)
    before = counts(session)
    summary = import_predictions(session, path)
    assert summary.imported == [] and summary.rejected == []
    assert summary.duplicates == ["p.jsonl:1", "p.jsonl:2"]
    assert counts(session) == before == {"Model": 1, "Run": 1, "Prediction": 2}


@pytest.mark.parametrize(("bad", "reason"), [
    ("{not json", "not valid JSON"),
    ("[1, 2, 3]", "must be a JSON object, got list"),
    ('"text"', "must be a JSON object, got str"),
    (line(case="demo/video09/000001"), "no case with key 'demo/video09/000001'"),
    ({"model": "m", "raw": "x", "task": "gozone"}, "missing 'case'"),
    ({"case": CASE_1, "raw": "x", "task": "gozone"}, "missing 'model'"),
    ({"case": CASE_1, "model": "m", "task": "gozone"}, "missing 'raw'"),
    (line(raw=42), "'raw' must be a string"),
    (line(raw=None), "'raw' must be a string"),
    (line(model=""), "'model' must be a non-empty string"),
    (line(case=7), "'case' must be a non-empty string"),
    (line(task="segmentation"), "unknown task 'segmentation'"),
    (line(params=[1, 2]), "'params' must be an object"),
    (line(params={"t": float("nan")}), "params hold NaN"),
    (line(latency_ms=-1), "'latency_ms' must be a finite number >= 0"),
    (line(latency_ms=float("inf")), "'latency_ms' must be a finite number >= 0"),
    (line(prompt_tokens=True), "'prompt_tokens' must be a whole number >= 0"),
    (line(completion_tokens=1.5), "'completion_tokens' must be a whole number >= 0"),
    (line(error=404), "'error' must be a non-empty string"),
    (line(prompt_version="v" * 51), "'prompt_version' is 51 characters; the limit is 50"),
    (line(box_convention="xywh"), "unknown box_convention 'xywh'"),
])
def test_bad_line_is_rejected_and_the_rest_goes_on(session, cases, tmp_path, bad, reason):
    path = write_jsonl(tmp_path / "p.jsonl", line(CASE_1), bad, line(CASE_2))
    summary = import_predictions(session, path)
    assert summary.imported == ["p.jsonl:1", "p.jsonl:3"]
    [(item, message)] = summary.rejected
    assert item == "p.jsonl:2" and reason in message
    assert counts(session)["Prediction"] == 2


def test_rejected_line_leaves_no_model_or_run(session, cases, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", line(case="demo/missing", model="ghost"))
    summary = import_predictions(session, path)
    assert len(summary.rejected) == 1 and counts(session) == {"Model": 0, "Run": 0, "Prediction": 0}


def test_task_comes_from_the_line_or_the_default(session, cases, tmp_path):
    no_task = {"case": CASE_1, "model": "m", "raw": "Phase B"}
    path = write_jsonl(tmp_path / "p.jsonl", no_task, {**no_task, "case": CASE_2, "task": "gozone"})
    without = import_predictions(session, path)
    assert "missing 'task'" in dict(without.rejected)["p.jsonl:1"] and without.imported == ["p.jsonl:2"]
    with_default = import_predictions(session, path, task="phase")
    assert with_default.imported == ["p.jsonl:1"] and with_default.duplicates == ["p.jsonl:2"]
    assert sorted(session.scalars(select(Run.task)).all()) == ["gozone", "phase"]


def test_existing_model_keeps_its_backend_and_config(session, cases, tmp_path):
    session.add(Model(name="surgo-r1", backend="transformers", family="qwen25",
                      box_convention="qwen25_pixels", location="/models/surgo", settings={"dtype": "bf16"}))
    session.flush()
    path = write_jsonl(tmp_path / "p.jsonl", line(box_convention="rel1000", color="#ff0000"))
    summary = import_predictions(session, path)
    assert summary.imported == ["p.jsonl:1"]
    model = session.scalar(select(Model))
    assert (model.backend, model.box_convention, model.location, model.color) == (
        "transformers", "qwen25_pixels", "/models/surgo", None)
    assert session.scalar(select(Prediction)).run.model_id == model.id
    assert any("keeps its box_convention 'qwen25_pixels'" in m for _, m in summary.warnings)


def test_blank_lines_are_skipped_and_items_keep_line_numbers(session, cases, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", "", line(CASE_1), "   ", line(CASE_2, extra_field=1))
    summary = import_predictions(session, path)
    assert summary.imported == ["p.jsonl:2", "p.jsonl:4"] and summary.rejected == []
    assert summary.warnings == [("p.jsonl:4", "ignored unknown key(s) extra_field")]


def test_overlong_and_non_utf8_lines_are_rejected(session, cases, tmp_path, monkeypatch):
    monkeypatch.setattr(predictions, "MAX_LINE_BYTES", 300)
    path = tmp_path / "p.jsonl"
    long_line = json.dumps(line(CASE_1, raw="x" * 1000)).encode()
    path.write_bytes(long_line + b"\n" + b'{"case": "\xff"}\n' + json.dumps(line(CASE_2)).encode() + b"\n")
    summary = import_predictions(session, path)
    reasons = dict(summary.rejected)
    assert "longer than 300 bytes" in reasons["p.jsonl:1"] and "not UTF-8" in reasons["p.jsonl:2"]
    assert summary.imported == ["p.jsonl:3"]


def test_missing_file_and_bad_defaults(session, tmp_path):
    summary = import_predictions(session, tmp_path / "absent.jsonl")
    assert summary.rejected[0][0] == "absent.jsonl" and "cannot read the file" in summary.rejected[0][1]
    with pytest.raises(ValueError, match="model_defaults accepts"):
        import_predictions(session, tmp_path / "absent.jsonl", model_defaults={"backend": "openai"})


def test_nul_and_lone_surrogates_in_model_text_are_stored_inert(session, tmp_path):
    """PostgreSQL refuses NUL in text; the same line must import on every database."""
    folder = tmp_path / "frames" / "v1"
    folder.mkdir(parents=True)
    (folder / "frame_000001.png").write_bytes(make_image_bytes(seed=91))
    store = FrameStore(tmp_path / "store")
    import_frames(session, store, [tmp_path / "frames"], CaseMeta("nul"))
    line = json.dumps({"case": "nul/v1/000001", "model": "m", "task": "phase", "raw": "a\u0000b\ud800c"})
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    summary = import_predictions(session, path)
    assert summary.rejected == [] and len(summary.imported) == 1
    raw = session.scalars(select(Prediction.raw_text).join(Prediction.case).where(Case.key == "nul/v1/000001")).one()
    assert raw == "a\ufffdb\ufffdc"
