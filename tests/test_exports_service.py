"""Export services on real SQLite and PostgreSQL over the demo pack and a study judged through the real
services: every export loads with ``datasets`` with exactly the expected columns, image paths resolve,
one ``<image>`` tag per image, manifests hash every file, exports are deterministic, atomic, recorded and
audited."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from sqlalchemy import select, update
from trl.data_utils import is_conversational

from annotation.training import export_labels
from db import bundles
from db.bundles import ExportFilters
from db.cases import CaseFilter
from db.errors import Conflict, PermissionDenied
from db.schema import AuditEvent, Case, Export, Label, Model, Prediction, ReviewItem, Run
from db.users import actor_of, create_user
from models.boxes import Box, canonical_to_qwen25
from review import studies
from review.preferences import PairRules, export_preferences
from review.rejection import export_rejection_sampling
from tests.review_app import DEMO_MODELS, load_demo_into

TRL_COLUMNS = {
    "dpo": {"prompt", "chosen", "rejected", "images"},
    "kto": {"prompt", "completion", "label", "images"},
    "ranking": {"conversations", "chosen", "rejected", "images"},
    "process": {"prompt", "completions", "labels", "levels", "answer_label", "images"},
}
SFT_COLUMNS = ({"messages", "images"}, {"conversations", "images"})


@pytest.fixture
def world(session, store):
    """The demo pack, an admin, three reviewers and a k=3 gozone study judged by script: demo-surgo-r1 is
    picked best on even cases and demo-surg-r1 on odd ones, both rated correct (surg-r1 by two of three);
    demo-baseline is rated incorrect by everyone."""
    load_demo_into(session, store)
    admin = actor_of(create_user(session, "ada", roles=["admin"]))
    reviewers = [actor_of(create_user(session, f"rev{i}", roles=["reviewer"])) for i in (1, 2, 3)]
    setup = studies.create_study(
        session,
        admin,
        name="export study",
        task="gozone",
        model_names=list(DEMO_MODELS),
        case_filter=CaseFilter(dataset="demo"),
        reviewers=[r.username for r in reviewers],
        k=3,
        seed=5,
    )
    model_of = dict(
        session.execute(
            select(Prediction.id, Model.name)
            .join(Run, Run.id == Prediction.run_id)
            .join(Model, Model.id == Run.model_id)
        ).all()
    )
    order = {key: i for i, key in enumerate(session.scalars(select(Case.key).order_by(Case.key)))}
    keys = dict(session.execute(select(Case.id, Case.key)).all())
    for number, reviewer in enumerate(reviewers):
        while (state := studies.next_item(session, reviewer, setup.study.id)).item is not None:
            item = session.scalar(select(ReviewItem).where(ReviewItem.token == state.item.token))
            letter = {model_of[p]: letter for letter, p in item.letter_map.items()}
            best = "demo-surg-r1" if order[keys[item.case_id]] % 2 else "demo-surgo-r1"
            correct = {"demo-surgo-r1": 1, "demo-surg-r1": int(number < 2), "demo-baseline": 0}
            levels = {
                "demo-surgo-r1": {1: "correct", 2: "correct", 3: "correct"},
                "demo-surg-r1": {1: "correct", 2: "wrong", 3: "correct"},
                "demo-baseline": {1: "na", 2: "na", 3: "na"},
            }
            ratings = {
                letter[m]: {"correct": correct[m], "levels": levels[m], "flags": []} for m in DEMO_MODELS
            }
            studies.submit_judgment(session, reviewer, state.item.token, letter[best], ratings)
    return SimpleNamespace(
        session=session, store=store, admin=admin, reviewer=reviewers[0], study=setup.study
    )


def _load(path: Path, cache: Path):  # noqa: ANN202
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def _check_manifest(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(manifest["files"])
    for name, info in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == info["sha256"]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers
    return manifest


def _check_images(folder: Path, rows) -> None:  # noqa: ANN001
    for row in rows:
        assert row["images"] and all((folder / image).is_file() for image in row["images"])
        assert all(not Path(image).is_absolute() for image in row["images"])
        tags = sum(str(m).count("<image>") for key in ("conversations",) for m in row.get(key) or ())
        parts = sum(
            1
            for key in ("prompt", "messages")
            for m in row.get(key) or ()
            for part in m["content"]
            if part["type"] == "image"
        )
        assert max(tags, parts) == len(row["images"])


@pytest.mark.parametrize("kind", ["dpo", "kto", "ranking", "process"])
def test_preference_exports_load_with_the_expected_columns(world, tmp_path, kind):
    out = tmp_path / kind
    result = export_preferences(world.session, world.admin, world.store, kind, out)
    manifest = _check_manifest(out)
    data = _load(out / f"{kind}.jsonl", tmp_path / "cache")
    assert set(data.column_names) == TRL_COLUMNS[kind]
    assert len(data) == manifest["counts"]["rows"] == result.counts["rows"] > 0
    _check_images(out, data)
    assert manifest["pair_rules"] == {"min_reviewers": 2, "ties": "drop", "disagreements": "keep"}
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert len(provenance) == len(data)
    if kind == "dpo":
        assert len(data) == 16 and all(is_conversational(row) for row in data)
        assert {p["rejected_model"] for p in provenance} == {"demo-baseline"}
        assert {p["chosen_model"] for p in provenance} == {"demo-surg-r1", "demo-surgo-r1"}
        assert all(
            row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant" for row in data
        )
    if kind == "kto":
        labels = {(p["model"]): row["label"] for p, row in zip(provenance, data, strict=True)}
        assert labels == {"demo-surgo-r1": True, "demo-surg-r1": True, "demo-baseline": False}
    if kind == "ranking":
        # Only the single-turn pairs (surg-r1 over baseline on the 8 odd cases) fit one message each.
        assert len(data) == 8 and manifest["counts"]["skipped"] == {
            "pair differs before its last turn (ranking holds one message each)": 8
        }
        info = json.loads((out / "dataset_info.json").read_text())
        assert info["surgreview_ranking"]["ranking"] is True
        assert info["surgreview_ranking"]["file_name"] == "ranking.jsonl"
    if kind == "process":
        by_model = {p["model"]: row for p, row in zip(provenance, data, strict=True)}
        assert by_model["demo-surg-r1"]["labels"] == [True, False, True]
        assert by_model["demo-surg-r1"]["levels"] == [1, 2, 3]
    export = world.session.scalar(select(Export).where(Export.kind == kind))
    assert export.sha256 == manifest["content_sha256"] and export.path == str(out.absolute())
    event = world.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.create"))
    assert event.actor_id == world.admin.user_id and event.entity_id == str(export.id)


def test_pair_rules_and_filters_change_what_is_exported(world, tmp_path):
    s = world.session
    strict = export_preferences(
        s, "cli:test", world.store, "kto", tmp_path / "a", rules=PairRules(disagreements="drop")
    )
    assert strict.counts["rows"] == 32  # surg-r1 (two of three said correct) is dropped
    none = export_preferences(
        s, "cli:test", world.store, "dpo", tmp_path / "b", rules=PairRules(min_reviewers=4)
    )
    assert none.counts["rows"] == 0 and (tmp_path / "b" / "dpo.jsonl").read_bytes() == b""
    train = export_preferences(
        s, "cli:test", world.store, "dpo", tmp_path / "c", filters=ExportFilters(split="train")
    )
    assert train.counts["rows"] == 8
    later = export_preferences(
        s, "cli:test", world.store, "dpo", tmp_path / "d", filters=ExportFilters(since=_far_future())
    )
    assert later.counts["rows"] == 0
    with pytest.raises(Exception, match="no study"):
        export_preferences(
            s, "cli:test", world.store, "dpo", tmp_path / "e", filters=ExportFilters(study="nope")
        )
    with pytest.raises(PermissionDenied):
        export_preferences(s, world.reviewer, world.store, "dpo", tmp_path / "f")
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()


def _far_future():  # noqa: ANN202
    from datetime import UTC, datetime

    return datetime(2999, 1, 1, tzinfo=UTC)


def test_rendered_completions_use_the_target_convention(world, tmp_path):
    result = export_preferences(
        world.session, "cli:test", world.store, "dpo", tmp_path / "q25", target="qwen25"
    )
    # demo-baseline names no phase: its Go Zone output cannot be rendered in phase-then-go form.
    assert result.counts["skipped"] == {"answer cannot be rendered for qwen25": 16}
    assert result.counts["rows"] == 0 and (tmp_path / "q25" / "dpo.jsonl").read_bytes() == b""
    kto = export_preferences(world.session, "cli:test", world.store, "kto", tmp_path / "k", target="qwen3")
    rows = _load(tmp_path / "k" / "kto.jsonl", tmp_path / "cache")
    assert kto.counts["rows"] == len(rows) == 32
    texts = [part["text"] for row in rows for m in row["completion"] for part in m["content"] if part["text"]]
    assert any("<think> Level 1:" in t for t in texts) and all("```" not in t for t in texts)


def test_sft_grpo_and_benchmark_from_labels(world, tmp_path):
    s = world.session
    label = s.scalar(select(Label).join(Case).where(Label.is_current).order_by(Case.key).limit(1))
    sft = export_labels(s, world.admin, world.store, "sft", tmp_path / "sft", target="qwen25")
    _check_manifest(tmp_path / "sft")
    trl = _load(tmp_path / "sft" / "sft_trl.jsonl", tmp_path / "cache")
    share = _load(tmp_path / "sft" / "sft_sharegpt.jsonl", tmp_path / "cache")
    assert (set(trl.column_names), set(share.column_names)) == SFT_COLUMNS
    assert len(trl) == len(share) == sft.counts["rows"] == 16
    _check_images(tmp_path / "sft", trl)
    _check_images(tmp_path / "sft", share)
    first = trl[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant"]
    assert first["messages"][1]["content"][0]["text"] == f"<answer>{label.phase}</answer>"
    expected = [round(v) for v in canonical_to_qwen25(Box(*label.box), 854, 480)]
    assert json.dumps(expected) in first["messages"][3]["content"][0]["text"]
    assert [c["from"] for c in share[0]["conversations"]] == ["human", "gpt", "human", "gpt"]
    info = json.loads((tmp_path / "sft" / "dataset_info.json").read_text())["surgreview_sft"]
    assert info["formatting"] == "sharegpt" and "ranking" not in info

    grpo = export_labels(s, world.admin, world.store, "grpo", tmp_path / "grpo", target="qwen3")
    rows = _load(tmp_path / "grpo" / "grpo.jsonl", tmp_path / "cache")
    assert set(rows.column_names) == {"prompt", "images", "solution", "phase", "box", "triplet", "cvs"}
    assert len(rows) == grpo.counts["rows"] == 16 and rows[0]["prompt"][-1]["role"] == "user"
    assert rows[0]["phase"] == label.phase and all(0 <= v <= 1000 for v in rows[0]["box"])

    bench = export_labels(s, world.admin, world.store, "benchmark", tmp_path / "bench")
    samples = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert len(samples) == bench.counts["rows"] == 16
    assert {"image", "phase", "box", "location", "exposure", "next_action", "critical_risk", "split"} <= set(
        samples[0]
    )
    assert samples[0]["box"] == list(label.box) and (tmp_path / "bench" / samples[0]["image"]).is_file()
    assert bench.counts["splits"] == {"test": 8, "train": 8}


def test_approved_only_takes_labels_from_approved_annotations(world, tmp_path):
    s = world.session
    case_id = s.scalar(select(Case.id).order_by(Case.key).limit(1))
    s.execute(update(Label).where(Label.case_id == case_id, Label.is_current).values(source="annotation:17"))
    result = export_labels(
        s,
        world.admin,
        world.store,
        "sft",
        tmp_path / "sft",
        target="qwen3",
        filters=ExportFilters(approved_only=True),
    )
    assert result.counts["rows"] == 1
    assert json.loads((tmp_path / "sft" / "provenance.jsonl").read_text())["source"] == "annotation:17"


def test_rejection_sampling_keeps_verified_traces_that_match_the_reference(world, tmp_path):
    result = export_rejection_sampling(
        world.session, world.admin, world.store, tmp_path / "rs", target="qwen25"
    )
    rows = _load(tmp_path / "rs" / "rejection_trl.jsonl", tmp_path / "cache")
    provenance = [json.loads(x) for x in (tmp_path / "rs" / "provenance.jsonl").read_text().splitlines()]
    assert len(rows) == result.counts["rows"] == len(provenance) > 0
    assert {p["model"] for p in provenance} <= {
        "demo-surg-r1",
        "demo-surgo-r1",
    }  # never the incorrect baseline
    labels = dict(world.session.execute(select(Case.key, Label).join(Label).where(Label.is_current)).all())
    for p, row in zip(provenance, rows, strict=True):
        final = row["messages"][-1]["content"][0]["text"]
        assert final.count("<answer>") == 1 and final.endswith("</answer>")
        assert (
            f"<answer>{labels[p['case']].phase}</answer>" in json.dumps(row["messages"])
            or labels[p["case"]].phase in final
        )
    assert set(result.counts["skipped"]) <= {"answer differs from the reference"}
    loose = export_rejection_sampling(
        world.session, world.admin, world.store, tmp_path / "loose", target="qwen25", min_iou=0.0
    )
    assert loose.counts["rows"] > result.counts["rows"]  # the IoU threshold matters
    rows = _load(tmp_path / "loose" / "rejection_trl.jsonl", tmp_path / "cache")
    # A Surg-R1 trace re-written in the phase-then-go form with its Levels in the Go Zone turn.
    assert any(row["messages"][-1]["content"][0]["text"].startswith("<think> Level 1:") for row in rows)


def test_exports_are_deterministic(world, tmp_path):
    for kind in ("dpo", "process"):
        first = export_preferences(world.session, "cli:a", world.store, kind, tmp_path / f"{kind}1")
        second = export_preferences(world.session, "cli:b", world.store, kind, tmp_path / f"{kind}2")
        assert _tree(tmp_path / f"{kind}1") == _tree(tmp_path / f"{kind}2")
        assert first.manifest == second.manifest
    one = export_labels(world.session, "cli:a", world.store, "sft", tmp_path / "s1", target="qwen3")
    export_labels(world.session, "cli:a", world.store, "sft", tmp_path / "s2", target="qwen3")
    assert _tree(tmp_path / "s1") == _tree(tmp_path / "s2") and one.manifest["source_as_of"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_failed_export_leaves_nothing_and_a_rerun_succeeds(world, tmp_path, monkeypatch):
    out = tmp_path / "exports" / "dpo"
    real = bundles.Bundle.write_jsonl

    def fail_after_first(self, name, records):  # noqa: ANN001, ANN202
        if self.files.keys() - {k for k in self.files if k.startswith("images/")}:
            raise OSError("disk full")
        return real(self, name, records)

    monkeypatch.setattr(bundles.Bundle, "write_jsonl", fail_after_first)
    with pytest.raises(OSError, match="disk full"):
        export_preferences(world.session, "cli:test", world.store, "dpo", out)
    assert list((tmp_path / "exports").iterdir()) == []  # neither the target nor a temporary folder
    assert world.session.scalar(select(Export)) is None
    monkeypatch.setattr(bundles.Bundle, "write_jsonl", real)
    export_preferences(world.session, "cli:test", world.store, "dpo", out)
    _check_manifest(out)
    with pytest.raises(Conflict):
        export_preferences(world.session, "cli:test", world.store, "dpo", out)
    again = export_preferences(world.session, "cli:test", world.store, "kto", out, overwrite=True)
    assert again.manifest["kind"] == "kto" and not (out / "dpo.jsonl").exists()
    _check_manifest(out)


def test_the_vote_reader_agrees_with_the_results_reader(world):
    from review.preferences import VOTE_COLUMNS, vote_ratings
    from review.results import load_ratings

    fast, dates = vote_ratings(world.session, world.study.id)
    full = load_ratings(world.session, world.study.id)[VOTE_COLUMNS]
    assert len(fast) == len(full) == 3 * 48 and set(dates) == set(fast["item"])
    pd_equal = fast.reset_index(drop=True).astype(str).equals(full.reset_index(drop=True).astype(str))
    assert pd_equal
