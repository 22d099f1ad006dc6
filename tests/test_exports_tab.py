"""The Export tab's handlers called as Gradio calls them: admins only (checked on the server), bundles under
the data folder's exports/ only, counts and folder shown."""

from __future__ import annotations

import json

import gradio as gr
import pytest

from app.tabs import exports
from db.errors import DomainError, PermissionDenied
from db.users import create_user
from tests.review_app import load_demo
from tests.web_helpers import PASSWORD, make_services

ARGS = dict(
    study="(any)",
    dataset="(any)",
    split="(any)",
    approved_only=False,
    since="",
    until="",
    target="qwen3",
    min_reviewers=2,
    ties="drop",
    disagreements="keep",
    task="gozone",
    overwrite=False,
)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    services = make_services(tmp_path_factory.mktemp("exports-tab") / "data")
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        create_user(session, "tab-admin", password=PASSWORD, roles=["admin"])
        create_user(session, "tab-rev", password=PASSWORD, roles=["reviewer"])
    yield services
    services.close()


def test_admins_export_into_the_data_folder(services):
    handlers = exports.ExportHandlers(services)
    html = handlers.run(gr.Request(username="tab-admin"), "sft", "train-sft", **{**ARGS, "split": "train"})
    folder = services.settings.data_dir / "exports" / "train-sft"
    assert "8 rows" in html and str(folder) in html and "sft_trl.jsonl" in html
    assert json.loads((folder / "manifest.json").read_text())["counts"]["rows"] == 8
    # No target chosen: training data gets Qwen2.5-VL boxes, as on the command line.
    handlers.run(gr.Request(username="tab-admin"), "grpo", "g", **{**ARGS, "target": ""})
    manifest = json.loads((services.settings.data_dir / "exports" / "g" / "manifest.json").read_text())
    assert manifest["target"] == "qwen25"
    with pytest.raises(DomainError, match="folder"):
        handlers.run(gr.Request(username="tab-admin"), "sft", "../outside", **ARGS)
    with pytest.raises(DomainError, match="date"):
        handlers.run(gr.Request(username="tab-admin"), "sft", "x", **{**ARGS, "since": "last week"})


def test_other_roles_are_refused_on_the_server(services):
    handlers = exports.ExportHandlers(services)
    with pytest.raises(PermissionDenied):
        handlers.run(gr.Request(username="tab-rev"), "benchmark", "b", **ARGS)
    assert not (services.settings.data_dir / "exports" / "b").exists()
    assert handlers.populate(gr.Request(username="tab-rev")) == [gr.skip()] * 4
    studies, datasets, splits, targets = handlers.populate(gr.Request(username="tab-admin"))
    assert [value for _, value in targets.choices] == ["", "qwen25", "qwen3"]
    assert "demo" in datasets.constructor_args["choices"] or any(
        "demo" in str(c) for c in datasets.constructor_args["choices"]
    )


def test_the_tab_builds(services):
    with gr.Blocks() as blocks:
        exports.build(services)
    assert any(getattr(b, "elem_id", None) == "exports-run" for b in blocks.blocks.values())
    assert frozenset({"admin"}) == exports.ROLES and exports.TITLE == "Export"
