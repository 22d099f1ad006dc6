"""The synthetic demo pack: frames, LabelMe reference labels, recorded model outputs (pure, no database)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from annotation.demo import DEMO_MODELS, TURN_SEPARATOR, DemoPackFiles, write_demo_pack
from models import vocabularies
from models.boxes import Box, fit_box, iou, qwen25_to_canonical, rel1000_to_canonical

WIDTH, HEIGHT = 854, 480
TASKS = ("phase", "gozone")
_JSON_BOX = re.compile(r'"bbox_2d":\s*\[([^\]]*)\]')
_PAIR_BOX = re.compile(r"\((-?\d+),\s*(-?\d+)\),\s*\((-?\d+),\s*(-?\d+)\)")


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DemoPackFiles:
    return write_demo_pack(tmp_path_factory.mktemp("demo") / "pack")


@pytest.fixture(scope="module")
def records(pack: DemoPackFiles) -> list[dict]:
    return [json.loads(line) for line in pack.predictions.read_text(encoding="utf-8").splitlines()]


def _answer(raw: str) -> str:
    return re.findall(r"<answer>(.*?)</answer>", raw, re.DOTALL)[-1].strip()


def _chosen_phase(record: dict) -> str | None:
    """The phase a phase-task output names (the demo models' forms only; the real parser comes later)."""
    raw = record["raw"]
    text = raw if record["model"] == "demo-baseline" else _answer(raw)
    return vocabularies.load("resgo").normalize_phase(text)


def _decoded_box(record: dict) -> Box:
    raw = record["raw"]
    match = _JSON_BOX.search(raw)
    values = [float(v) for v in match.group(1).split(",")] if match else \
        [float(v) for v in _PAIR_BOX.search(raw).groups()]
    decode = qwen25_to_canonical if record["box_convention"] == "qwen25_pixels" else rel1000_to_canonical
    return fit_box(*decode(tuple(values), WIDTH, HEIGHT), WIDTH, HEIGHT).box


def test_writes_frames_labels_and_predictions(pack: DemoPackFiles) -> None:
    frames = sorted(pack.frames_dir.rglob("*.png"))
    assert len(frames) == 16 == len(pack.cases)
    assert {p.parent.name for p in frames} == {"demo_vid01", "demo_vid02"}
    assert (pack.frames_dir / "demo_vid01" / "frame_000000.png").is_file()
    assert pack.predictions.is_file()
    for frame in frames:
        with Image.open(frame) as image:
            assert (image.format, image.size) == ("PNG", (WIDTH, HEIGHT))
        assert frame.with_suffix(".json").is_file()


def test_cases_are_spaced_in_surgical_order_with_four_frames_per_phase(pack: DemoPackFiles) -> None:
    assert sorted(c.phase for c in pack.cases) == sorted("ABCD" * 4)
    for video in ("demo_vid01", "demo_vid02"):
        cases = [c for c in pack.cases if c.video == video]
        assert [c.frame_index for c in cases] == [125 * i for i in range(len(cases))]
        assert [c.phase for c in cases] == sorted(c.phase for c in cases)
        assert len({c.phase for c in cases}) >= 3
        assert all(c.key == f"demo/{video}/{c.frame_index:06d}" for c in cases)


def test_labelme_has_one_gozone_rectangle_inside_the_frame_and_a_phase(pack: DemoPackFiles) -> None:
    by_image = {c.image: c for c in pack.cases}
    for path in sorted(pack.frames_dir.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert (doc["imageWidth"], doc["imageHeight"], doc["imageData"]) == (WIDTH, HEIGHT, None)
        assert doc["imagePath"] == path.with_suffix(".png").name and "version" in doc
        (shape,) = doc["shapes"]
        assert (shape["label"], shape["shape_type"]) == ("gozone", "rectangle")
        (x1, y1), (x2, y2) = shape["points"]
        assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT
        assert (x2 - x1) * (y2 - y1) > 1500
        (phase,) = [k for k, v in doc["flags"].items() if v]
        assert phase in "ABCD" and len(phase) == 1
        case = by_image[path.relative_to(pack.folder).with_suffix(".png").as_posix()]
        assert (case.phase, case.box.as_tuple()) == (phase, (x1, y1, x2, y2))
        for key in ("location", "exposure", "next_action", "critical_risk"):
            assert isinstance(doc[key], str) and len(doc[key]) > 20


def test_frames_carry_the_synthetic_watermark(pack: DemoPackFiles) -> None:
    with Image.open(pack.frames_dir / "demo_vid01" / "frame_000000.png") as image:
        corner = image.convert("L").crop((WIDTH - 300, HEIGHT - 30, WIDTH, HEIGHT))
    assert corner.getextrema()[1] > 200  # light text on the black scope border


def test_the_pack_is_byte_identical_on_every_run(pack: DemoPackFiles, tmp_path: Path) -> None:
    again = write_demo_pack(tmp_path / "again")
    files = sorted(p.relative_to(pack.folder) for p in pack.folder.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.folder) for p in again.folder.rglob("*") if p.is_file())
    assert {p.suffix for p in files} == {".png", ".json", ".jsonl"}
    for relative in files:
        assert (pack.folder / relative).read_bytes() == (again.folder / relative).read_bytes(), relative
    assert again.planted == pack.planted


def test_predictions_cover_every_case_model_and_task(pack: DemoPackFiles, records: list[dict]) -> None:
    assert len(records) == 16 * len(TASKS) * len(DEMO_MODELS)
    keys = {c.key for c in pack.cases}
    assert {(r["case"], r["model"], r["task"]) for r in records} == \
        {(k, m, t) for k in keys for m in DEMO_MODELS for t in TASKS}
    for record in records:
        model = DEMO_MODELS[record["model"]]
        assert (record["family"], record["box_convention"], record["color"]) == \
            (model.family, model.box_convention, model.color)
        assert record["prompt_version"] == "demo-v1"
        assert record["latency_ms"] > 0 and record["completion_tokens"] > 0


def test_surg_r1_outputs_follow_the_three_level_form(records: list[dict]) -> None:
    outputs = [r for r in records if r["model"] == "demo-surg-r1"]
    unclosed = [r for r in outputs if "</think>" not in r["raw"]]
    assert len(unclosed) == 1 and unclosed[0]["task"] == "phase"
    for record in outputs:
        raw = record["raw"]
        assert raw.startswith("<think> This is a Level 3 task requiring")
        assert raw.index("Level 1:") < raw.index("Level 2:") < raw.index("Level 3:") < raw.index("<answer>")


def test_surg_r1_gozone_boxes_decode_inside_the_frame(records: list[dict]) -> None:
    boxes = [r for r in records if (r["model"], r["task"]) == ("demo-surg-r1", "gozone")]
    assert len(boxes) == 16
    for record in boxes:
        (item,) = json.loads(_answer(record["raw"]))
        x1, y1, x2, y2 = qwen25_to_canonical(tuple(item["bbox_2d"]), WIDTH, HEIGHT)
        assert item["label"] == "go zone" and all(isinstance(v, int) for v in item["bbox_2d"])
        assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT


def test_surgo_r1_gozone_holds_both_turns_and_the_four_parts(records: list[dict]) -> None:
    outputs = [r for r in records if (r["model"], r["task"]) == ("demo-surgo-r1", "gozone")]
    assert len(outputs) == 16
    for record in outputs:
        first, second = record["raw"].split(f"\n{TURN_SEPARATOR}\n")
        assert re.fullmatch(r"<think>.+</think><answer>[ABCD]</answer>", first, re.DOTALL)
        lines = second.splitlines()
        for title in ("Location: ", "Exposure: ", "Next action: ", "Critical risk: "):
            assert sum(line.startswith(title) for line in lines) == 1
        (item,) = json.loads(re.search(r"```json\n(.*?)\n```", second, re.DOTALL).group(1))
        assert all(isinstance(v, int) and 0 <= v <= 1000 for v in item["bbox_2d"])


def test_baseline_answers_without_reasoning(records: list[dict]) -> None:
    for record in (r for r in records if r["model"] == "demo-baseline"):
        assert "<think>" not in record["raw"] and "<answer>" not in record["raw"]
        if record["task"] == "gozone":
            assert _PAIR_BOX.fullmatch(record["raw"])
        else:
            assert _chosen_phase(record) is not None


def test_phase_accuracy_and_box_quality_are_ordered_by_model(pack: DemoPackFiles,
                                                              records: list[dict]) -> None:
    reference = {c.key: c for c in pack.cases}
    accuracy, mean_iou = {}, {}
    for model in DEMO_MODELS:
        phases = [r for r in records if (r["model"], r["task"]) == (model, "phase")]
        accuracy[model] = sum(_chosen_phase(r) == reference[r["case"]].phase for r in phases) / len(phases)
        boxes = [r for r in records if (r["model"], r["task"]) == (model, "gozone")]
        mean_iou[model] = sum(iou(_decoded_box(r), reference[r["case"]].box) for r in boxes) / len(boxes)
    assert 0.75 <= accuracy["demo-surgo-r1"] <= 0.85
    assert 0.65 <= accuracy["demo-surg-r1"] <= 0.75
    assert 0.30 <= accuracy["demo-baseline"] <= 0.40
    assert mean_iou["demo-surgo-r1"] > mean_iou["demo-surg-r1"] > mean_iou["demo-baseline"]


def test_surgo_r1_boxes_under_the_right_phase_overlap_the_reference(pack: DemoPackFiles,
                                                                     records: list[dict]) -> None:
    reference = {c.key: c for c in pack.cases}
    outputs = [r for r in records if (r["model"], r["task"]) == ("demo-surgo-r1", "gozone")]
    right = [r for r in outputs if r["raw"].split(TURN_SEPARATOR)[0].rstrip()
             .endswith(f"<answer>{reference[r['case']].phase}</answer>")]
    assert len(right) >= 12
    overlaps = [iou(_decoded_box(r), reference[r["case"]].box) for r in right]
    assert all(0.3 <= o <= 0.85 for o in overlaps), overlaps


def test_planted_mistakes_are_listed(pack: DemoPackFiles) -> None:
    kinds = {(p.model, p.kind) for p in pack.planted}
    assert {("demo-surg-r1", "hallucination"), ("demo-surg-r1", "malformed"),
            ("demo-surgo-r1", "wrong_rationale"), ("demo-baseline", "swapped_corners")} <= kinds
    assert {m for m, kind in kinds if kind == "wrong_phase"} == set(DEMO_MODELS)
