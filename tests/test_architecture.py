"""House rules that a reader should not have to police: layers look down, settings are documented."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.settings import Settings, settings_table

ROOT = Path(__file__).resolve().parents[1]
# What each package may import of ours: app -> review, annotation -> models, db.
ALLOWED = {
    "db": {"db"},
    "models": {"models", "db"},
    "review": {"review", "models", "db"},
    "annotation": {"annotation", "models", "db"},
    "app": {"app", "review", "annotation", "models", "db"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_only_import_downwards(package):
    ours = set(ALLOWED)
    wrong = {}
    for path in (ROOT / package).rglob("*.py"):
        imported = _imports(path)
        bad = (imported & ours) - ALLOWED[package]
        if package != "app" and "gradio" in imported:
            bad.add("gradio")
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"imports against the layer rules: {wrong}"


def test_every_setting_is_documented_in_code_and_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for row in settings_table():
        assert row["description"], f"setting {row['name']} has no description"
        assert row["env"] in readme, f"README does not document {row['env']}"


def test_settings_derive_paths_and_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{(tmp_path / 'surgreview.db').as_posix()}"
    assert settings.frames_dir == tmp_path / "frames"


def test_settings_read_a_toml_file(monkeypatch, tmp_path):
    config = tmp_path / "surgreview.toml"
    config.write_text('port = 8123\ndatabase_url = "postgresql+psycopg://db/x"\n', encoding="utf-8")
    monkeypatch.setenv("SURGREVIEW_CONFIG", str(config))
    settings = Settings()
    assert (settings.port, settings.database_url) == (8123, "postgresql+psycopg://db/x")


def test_a_misspelt_setting_is_an_error(monkeypatch, tmp_path):
    config = tmp_path / "surgreview.toml"
    config.write_text("prot = 8123\n", encoding="utf-8")
    monkeypatch.setenv("SURGREVIEW_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        Settings()
