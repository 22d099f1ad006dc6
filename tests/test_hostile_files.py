"""The hostile input corpus (tests/hostile/ plus binary items made here, see tests/hostile_corpus.py) fed
through the file paths each item would really take: the frame store and the upload / frame / LabelMe /
prediction importers, Label Studio results, backup archives, the CLI. Every item is either rejected with a
message that says what is wrong or stored as inert text. The web app's handlers are tests/test_hostile_handlers.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotation.importers import CaseMeta, import_frames
from annotation.importers.labelme import MAX_JSON_BYTES, import_labelme
from annotation.importers.predictions import MAX_LINE_BYTES, import_predictions
from annotation.importers.uploads import import_uploads
from annotation.labelstudio.payloads import UnusableAnnotation, read_result
from annotation.workflow import gozone_vocabulary
from app.cli import cli
from db.backup_format import FORMAT, FORMAT_VERSION, MANIFEST, ArchiveDamaged, open_archive
from db.schema import (
    Case,
    Frame,
    Label,
    Model,
    Prediction,
)
from tests.conftest import make_image_bytes
from tests.hostile_corpus import (
    CORPUS,
    HOSTILE_KEY,
    IMAGES,
    PNG,
    STRINGS,
    USERNAMES,
    hostile_case,
    png_bomb,
    zip_bytes,
)


def test_the_corpus_has_at_least_thirty_items():
    labelme = list((CORPUS / "labelme").glob("*.json"))
    predictions = (CORPUS / "predictions.jsonl").read_text().splitlines()
    studio = json.loads((CORPUS / "labelstudio_results.json").read_text())
    boxes = json.loads((CORPUS / "editor_boxes.json").read_text())
    total = (len(IMAGES) + len(labelme) + len(predictions) + len(studio) + len(boxes) + len(STRINGS)
             + len(USERNAMES["duplicates"]) + len(USERNAMES["refused"]))
    assert total >= 30 and len(labelme) >= 10 and len(predictions) >= 10, total


# --- images: the frame store behind every importer ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(IMAGES))
def test_a_hostile_image_upload_is_rejected_with_its_reason(session, store, tmp_path, name):
    data, reason = IMAGES[name]
    path = tmp_path / f"{name}.png"
    path.write_bytes(data)
    store.max_pixels = 40_000_000
    result = import_uploads(session, store, [(f"<b>{name}</b>.png", path)])
    assert not result.cases
    [(shown, why)] = result.rejected
    assert shown == f"<b>{name}</b>.png" and reason.lower() in why.lower(), why
    assert session.scalar(select(func.count()).select_from(Frame)) == 0
    assert not [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else True


def test_an_over_large_file_is_refused_before_it_is_read(session, store, tmp_path):
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:  # sparse: nothing is written to disk
        handle.truncate(store.max_bytes + 1)
    [(_, why)] = import_uploads(session, store, [("huge.png", path)]).rejected
    assert f"the limit is {store.max_bytes:,}" in why


def test_hostile_file_names_are_kept_as_text_and_never_become_paths(session, store, tmp_path):
    """A frame's file name only names the case; the store path is the sha256, whatever the name says."""
    folder = tmp_path / "in" / "..\\..\\evil"
    folder.mkdir(parents=True)
    (folder / "<img src=x onerror=alert(1)> 7.png").write_bytes(PNG)
    summary = import_frames(session, store, [tmp_path / "in"], CaseMeta("hostile-names"))
    assert summary.counts["imported"] == 1, summary.render()
    case = session.scalar(select(Case).where(Case.dataset == "hostile-names"))
    assert case.key == "hostile-names/..\\..\\evil/000007"
    stored = store.path(case.frame).resolve()
    assert stored.is_relative_to(store.root.resolve()) and stored.name.startswith(case.frame.sha256)
    with pytest.raises(ValueError, match="without '/'"):
        CaseMeta("../../etc")


def test_a_labelme_image_that_is_a_bomb_is_rejected(session, store, tmp_path):
    doc = json.loads((CORPUS / "labelme" / "script_texts.json").read_text())
    doc.update(imagePath=None, imageData=base64.b64encode(png_bomb()).decode(), imageWidth=30_000,
               imageHeight=30_000)
    (tmp_path / "bomb.json").write_text(json.dumps(doc))
    summary = import_labelme(session, store, [tmp_path], CaseMeta("hostile-bomb"))
    [(_, why)] = summary.rejected
    assert "too large to decode safely" in why


# --- LabelMe -------------------------------------------------------------------------------------------------

LABELME = {
    "path_dotdot": "points outside the import folder",
    "path_dotdot_inside_name": "points outside the import folder",
    "path_absolute": "is absolute",
    "path_windows_drive": "is absolute",
    "path_unc": "is absolute",
    "path_nul": "is not a usable file name",
    "box_nan": "Go Zone box rejected",
    "box_infinity": "Go Zone box rejected",
    "box_minus_infinity": "Go Zone box rejected",
    "box_1e309": "Go Zone box rejected",
    "box_huge_integer": "Go Zone box rejected",
    "box_strings": "Go Zone box rejected",
    "box_wrong_shape": "rectangle points must be",
    "script_texts": None,  # imported, kept as text
    "nul_and_surrogate_texts": None,
}


@pytest.fixture
def labelme_folder(tmp_path: Path) -> Path:
    """Every LabelMe file of the corpus in one folder, each in its own subfolder beside a 64x48 frame."""
    root = tmp_path / "labelme"
    for source in sorted((CORPUS / "labelme").glob("*.json")):
        folder = root / source.stem
        folder.mkdir(parents=True)
        (folder / source.name).write_bytes(source.read_bytes())
        (folder / "frame.png").write_bytes(make_image_bytes(64, 48, seed=len(source.stem)))
    return root


def test_every_labelme_file_of_the_corpus_is_rejected_or_stored_inert(session, store, labelme_folder):
    assert sorted(LABELME) == sorted(p.stem for p in (CORPUS / "labelme").glob("*.json"))
    summary = import_labelme(session, store, [labelme_folder], CaseMeta("hostile-labelme"))
    rejected = {Path(item).parts[0]: why for item, why in summary.rejected}
    for name, reason in LABELME.items():
        if reason is None:
            assert name not in rejected, rejected.get(name)
        else:
            assert reason in rejected.get(name, ""), (name, rejected.get(name))
    assert sorted(Path(item).parts[0] for item in summary.imported) == ["nul_and_surrogate_texts", "script_texts"]
    labels = {label.source.split(":")[1].split("/")[0]: label for label in session.scalars(
        select(Label).join(Case, Case.id == Label.case_id).where(Case.dataset == "hostile-labelme"))}
    texts = json.loads((CORPUS / "labelme" / "script_texts.json").read_text())
    script = labels["script_texts"]
    assert (script.location, script.next_action) == (texts["location"], texts["next_action"])
    assert script.extra["top"]["note"] == texts["note"]
    odd = labels["nul_and_surrogate_texts"]
    assert (odd.location, odd.exposure) == ("a\ufffdb", "half \ufffd pair")
    assert odd.extra["top"]["note"] == {"deep": ["x\ufffdy", "\ufffd"]}


def test_oversized_and_deeply_nested_labelme_files_are_rejected(session, store, tmp_path):
    (tmp_path / "frame.png").write_bytes(PNG)
    with (tmp_path / "oversized.json").open("wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)
    (tmp_path / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "nested_key.json").write_text('{"shapes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    summary = import_labelme(session, store, [tmp_path], CaseMeta("hostile-json"))
    rejected = dict(summary.rejected)
    assert f"the limit is {MAX_JSON_BYTES:,}" in rejected["oversized.json"]
    assert "nested too deeply" in rejected["nested.json"] and "nested too deeply" in rejected["nested_key.json"]


# --- predictions JSONL ---------------------------------------------------------------------------------------

PREDICTIONS = {
    "case_traversal": "no case with key '../../../../etc/passwd'",
    "case_sql": "no case with key",
    "case_nul": "'case' holds a NUL byte or a lone surrogate",
    "model_lone_surrogate": "'model' holds a NUL byte or a lone surrogate",
    "task_traversal": "unknown task '../../gozone'",
    "not_an_object": "a line must be a JSON object",
    "tokens_negative": "'prompt_tokens' must be a whole number >= 0",
    "latency_nan": "'latency_ms' must be a finite number",
    "latency_infinity": "'latency_ms' must be a finite number",
    "latency_1e309": "'latency_ms' must be a finite number",
    "tokens_1e309": "'prompt_tokens' must be a whole number >= 0",
    "params_nan": "params hold NaN or Infinity",
    "model_html": "may hold only letters, digits",
    "color_html": "'color' must be #rrggbb",
    "raw_script": None,
    "raw_nul_surrogate": None,
    "raw_sql": None,
    "raw_nan_boxes": None,
}
def test_every_prediction_line_of_the_corpus_is_rejected_or_stored_inert(session, store, tmp_path):
    case = hostile_case(session, store, tmp_path)
    names = json.loads((CORPUS / "predictions.names.json").read_text())
    assert sorted(names) == sorted(PREDICTIONS)
    summary = import_predictions(session, CORPUS / "predictions.jsonl")
    by_line = {int(item.rsplit(":", 1)[1]): why for item, why in summary.rejected}
    for number, name in enumerate(names, start=1):
        reason = PREDICTIONS[name]
        if reason is None:
            assert number not in by_line, (name, by_line[number])
        else:
            assert reason in by_line.get(number, ""), (name, by_line.get(number))
    raws = dict(session.execute(select(Model.name, Prediction.raw_text).join(
        Prediction.run).join(Model).where(Prediction.case_id == case.id)).all())
    assert raws["m-nul-raw"] == "<answer>B\ufffd \ufffd \ufffd</answer>"
    assert "<script>alert('answer')</script>" in raws["m-script-raw"]
    assert session.scalar(select(func.count()).select_from(Model).where(Model.name.like("<img%"))) == 0


def test_oversized_and_deeply_nested_prediction_lines_are_rejected(session, store, tmp_path):
    hostile_case(session, store, tmp_path)
    path = tmp_path / "big.jsonl"
    line = {"case": HOSTILE_KEY, "model": "m", "task": "gozone"}
    with path.open("w") as handle:
        handle.write(json.dumps({**line, "raw": "x" * (MAX_LINE_BYTES + 10)}) + "\n")
        handle.write(json.dumps(line)[:-1] + ', "raw": "x", "params": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
        handle.write('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    summary = import_predictions(session, path)
    rejected = dict(summary.rejected)
    assert f"longer than {MAX_LINE_BYTES:,} bytes" in rejected["big.jsonl:1"]
    assert "nested too deeply" in rejected["big.jsonl:2"] and "nested too deeply" in rejected["big.jsonl:3"]
    assert not summary.imported


# --- Label Studio results ------------------------------------------------------------------------------------

LABEL_STUDIO = {
    "x_string": "not four finite numbers", "width_null": "not four finite numbers",
    "y_bool": "not four finite numbers", "x_nan": "not four finite numbers",
    "width_infinity": "not four finite numbers", "height_1e309": "not four finite numbers",
    "rotated": "rotated by 45 degrees", "script_phase": "is not in the ResGo", "script_text": None,
}


def test_label_studio_results_with_non_finite_boxes_are_refused(session, store, tmp_path):
    case = hostile_case(session, store, tmp_path)
    results = json.loads((CORPUS / "labelstudio_results.json").read_text())
    assert sorted(results) == sorted(LABEL_STUDIO)
    vocabulary = gozone_vocabulary(case)
    for name, reason in LABEL_STUDIO.items():
        if reason is None:
            read = read_result(results[name], 64, 48, vocabulary)
            assert read.draft.location == "<script>alert('ls')</script>"
            continue
        with pytest.raises(UnusableAnnotation, match=reason.replace(".", r"\.")):
            read_result(results[name], 64, 48, vocabulary)


# --- archives and the command line ---------------------------------------------------------------------------

def test_a_zip_slip_backup_archive_is_refused_before_anything_is_written(tmp_path):
    evil = "frames/../../../../tmp/evil.txt"
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "revision": "0004", "tables": [],
                "members": {evil: {"sha256": "0" * 64, "size": 4}}}
    path = tmp_path / "backup.zip"
    path.write_bytes(zip_bytes({MANIFEST: json.dumps(manifest).encode(), evil: b"evil"}))
    with pytest.raises(ArchiveDamaged, match="unexpected member"):
        open_archive(path)
    assert not Path("/tmp/evil.txt").exists() or Path("/tmp/evil.txt").read_bytes() != b"evil"


def test_hostile_cli_arguments_are_refused_or_kept_as_text(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "frame_000003.png").write_bytes(PNG)
    runner = CliRunner()
    refused = runner.invoke(cli, ["import", "frames", str(tmp_path / "in"), "--dataset", "../../etc"])
    assert refused.exit_code != 0 and "without '/'" in str(refused.exception)
    kept = runner.invoke(cli, ["import", "frames", str(tmp_path / "in"), "--dataset", "cli",
                               "--video", "../../../etc"])
    assert kept.exit_code == 0 and "1 imported" in kept.output, kept.output
    frames = [p for p in (tmp_path / "data" / "frames").rglob("*") if p.is_file()]
    assert frames and all(p.resolve().is_relative_to((tmp_path / "data" / "frames").resolve()) for p in frames)
    labelme = runner.invoke(cli, ["import", "labelme", str(CORPUS / "labelme" / "path_dotdot.json"),
                                  "--dataset", "cli"])
    assert labelme.exit_code == 3 and "points outside the import folder" in labelme.output, labelme.output
