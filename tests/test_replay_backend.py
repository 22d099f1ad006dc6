"""The replay backend: recorded answers by (case, task) for one model; bad lines skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.backends import BackendError, GenerationRequest, ModelSpec, create_backend
from models.backends.replay_backend import ReplayBackend

GOOD = [
    {"case": "demo/v01/000125", "model": "surg-r1", "task": "phase", "raw": "<answer>B</answer>",
     "latency_ms": 812.5, "prompt_tokens": 900, "completion_tokens": 40},
    {"case": "demo/v01/000125", "model": "surg-r1", "task": "gozone", "raw": "<answer>[1, 2, 3, 4]</answer>"},
    {"case": "demo/v01/000125", "model": "baseline", "task": "phase", "raw": "A"},
    {"case": "demo/v01/000130", "model": "surg-r1", "task": "phase", "raw": None,
     "error": "CUDA out of memory"},
    {"case": "demo/v01/000140", "model": "surg-r1", "task": "phase", "raw": "first run"},
    {"case": "demo/v01/000140", "model": "surg-r1", "task": "phase", "raw": "second run"},
]
MALFORMED = [
    '{"case": "demo/v01/000131", "model": "surg-r1"',  # cut short
    "[1, 2, 3]",  # not an object
    '{"case": "x", "model": "surg-r1", "task": "phase"}',  # no raw
    '{"case": 7, "model": "surg-r1", "task": "phase", "raw": "case ids are text"}',
    '{"case": "x", "model": "surg-r1", "task": "phase", "raw": 12}',
]


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    lines = [json.dumps(GOOD[0]), MALFORMED[0], json.dumps(GOOD[1]), "", json.dumps(GOOD[2]), *MALFORMED[1:],
             *(json.dumps(line) for line in GOOD[3:])]
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def replay(path: Path, name: str = "surg-r1") -> ReplayBackend:
    backend = create_backend(ModelSpec(name=name, backend="replay", path=path))
    assert isinstance(backend, ReplayBackend)
    return backend


def request(case: str, task: str) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": "ignored"}], key=(case, task))


def test_answers_the_recorded_text_with_its_numbers(recorded):
    phase, gozone = replay(recorded).generate([request("demo/v01/000125", "phase"),
                                               request("demo/v01/000125", "gozone")])
    assert (phase.text, phase.error, phase.key) == ("<answer>B</answer>", None, ("demo/v01/000125", "phase"))
    assert (phase.latency_ms, phase.prompt_tokens, phase.completion_tokens) == (812.5, 900, 40)
    assert gozone.text == "<answer>[1, 2, 3, 4]</answer>" and gozone.latency_ms is None


def test_missing_case_or_task_is_an_error_naming_both(recorded):
    backend = replay(recorded)
    [missing_task, missing_case] = backend.generate([request("demo/v01/000125", "triplet"),
                                                     request("demo/v01/999999", "phase")])
    assert missing_task.error == "no recorded output for case demo/v01/000125 task triplet"
    assert missing_case.error == "no recorded output for case demo/v01/999999 task phase"
    with pytest.raises(BackendError, match="no recorded output for case demo/v01/999999 task phase"):
        list(backend.stream(request("demo/v01/999999", "phase")))


def test_lines_of_other_models_are_ignored(recorded):
    [ours] = replay(recorded).generate([request("demo/v01/000125", "phase")])
    [theirs] = replay(recorded, name="baseline").generate([request("demo/v01/000125", "phase")])
    [absent] = replay(recorded, name="baseline").generate([request("demo/v01/000125", "gozone")])
    assert (ours.text, theirs.text) == ("<answer>B</answer>", "A")
    assert "no recorded output" in absent.error


def test_malformed_lines_are_skipped_and_counted(recorded):
    backend = replay(recorded)
    assert backend.skipped_lines == len(MALFORMED)
    [result] = backend.generate([request("demo/v01/000125", "gozone")])
    assert result.error is None


def test_recorded_errors_and_reruns(recorded):
    failed, rerun = replay(recorded).generate([request("demo/v01/000130", "phase"),
                                               request("demo/v01/000140", "phase")])
    assert (failed.text, failed.error) == ("", "CUDA out of memory")
    assert rerun.text == "second run"


def test_stream_yields_the_whole_text_once(recorded):
    assert list(replay(recorded).stream(request("demo/v01/000125", "phase"))) == ["<answer>B</answer>"]


def test_the_file_is_read_lazily_and_indexed_once(recorded):
    backend = replay(recorded)
    recorded.write_text(json.dumps({**GOOD[0], "raw": "written after construction"}) + "\n", encoding="utf-8")
    assert backend.generate([request("demo/v01/000125", "phase")])[0].text == "written after construction"
    recorded.unlink()  # indexed already: no further reads
    assert backend.generate([request("demo/v01/000125", "phase")])[0].text == "written after construction"


def test_a_bad_key_or_missing_file_is_reported(tmp_path, recorded):
    [result] = replay(recorded).generate([GenerationRequest(messages=[], key="demo/v01/000125")])
    assert "(case, task)" in result.error
    backend = replay(recorded)
    recorded.unlink()
    assert "cannot read" in backend.generate([request("demo/v01/000125", "phase")])[0].error
    with pytest.raises(BackendError, match="does not exist"):
        replay(tmp_path / "absent.jsonl")
