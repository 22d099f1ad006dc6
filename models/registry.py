"""The model registry file (TOML): one ``[[models]]`` table per model.

    [[models]]
    name = "surg-r1"
    backend = "transformers"          # transformers | openai | replay
    path = "/models/Surg-R1"          # a local checkpoint folder (transformers) or a JSONL file (replay)
    adapter = "/models/Surg-R1-lora"  # optional LoRA adapter folder
    family = "qwen2.5-vl"             # qwen2.5-vl | qwen3-vl | qwen2-vl | other
    box_convention = "qwen25_pixels"  # qwen25_pixels | rel1000 | pixels
    quantization = "4bit"             # none | 4bit | 8bit
    color = "#1f77b4"
    [models.generation]
    max_new_tokens = 1024
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from models.backends.base import ModelSpec


class RegistryError(ValueError):
    """The registry file cannot be read; the message names the file, the model and the field."""


def load_registry(path: Path) -> dict[str, ModelSpec]:
    """Model specs by name from ``path``; an absent file is an empty registry."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: not valid TOML ({exc})") from exc
    entries = data.get("models", [])
    if not isinstance(entries, list):
        raise RegistryError(f"{path}: 'models' must be an array of tables ([[models]])")
    specs: dict[str, ModelSpec] = {}
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name", f"#{number}") if isinstance(entry, dict) else f"#{number}"
        try:
            spec = ModelSpec.model_validate(_relative_paths(entry, path.parent))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise RegistryError(f"{path}: model {name!r}: {problems}") from exc
        if spec.name in specs:
            raise RegistryError(f"{path}: model {spec.name!r} is declared twice")
        specs[spec.name] = spec
    return specs


def _relative_paths(entry: object, base: Path) -> object:
    """Paths in the file are relative to the file's folder."""
    if not isinstance(entry, dict):
        return entry
    fixed = dict(entry)
    for key in ("path", "adapter"):
        if isinstance(fixed.get(key), str) and not Path(fixed[key]).expanduser().is_absolute():
            fixed[key] = str(base / fixed[key])
    return fixed
