"""Vocabularies as data: one TOML file per dataset or procedure, loaded and looked up here."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Phase:
    id: str
    name: str
    aliases: tuple[str, ...] = ()
    definition: str | None = None


@dataclass(frozen=True, eq=False)
class Vocabulary:
    name: str
    procedure: str
    title: str
    phases: tuple[Phase, ...] = ()
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    items: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)

    def phase(self, phase_id: str) -> Phase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        raise KeyError(f"{self.name} has no phase {phase_id!r}")

    def normalize_phase(self, raw: str | None) -> str | None:
        """The phase id that ``raw`` names (id, name or alias, any case and punctuation), or None."""
        if raw is None:
            return None
        key = _squash(raw)
        if not key:
            return None
        table = _phase_table(self)
        if key in table:
            return table[key]
        # "Phase B", "(B)", "B." and "B: Dissection ..." name the single-letter id B.
        letter = re.fullmatch(r"\s*(?:phase\s*)?\(?([A-Za-z])\)?[.:)]?(?:\s.*)?", raw.strip(), re.IGNORECASE)
        if letter and self.phases and len(self.phases[0].id) == 1:
            candidate = letter.group(1).upper()
            if any(p.id == candidate for p in self.phases):
                return candidate
        return None


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("'s", "s"))


@cache
def _phase_table(vocab: Vocabulary) -> dict[str, str]:
    table: dict[str, str] = {}
    for phase in vocab.phases:
        for name in (phase.id, phase.name, *phase.aliases):
            table.setdefault(_squash(name), phase.id)
    return table


@cache
def load(name: str) -> Vocabulary:
    """The vocabulary called ``name`` (file stem under models/vocabularies)."""
    path = _HERE / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(available())
        raise KeyError(f"no vocabulary {name!r}; known: {known}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    phases = tuple(Phase(p["id"], p["name"], tuple(p.get("aliases", ())), p.get("definition"))
                   for p in data.get("phases", ()))
    lists = {k: tuple(v) for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], str)}
    items = {k: tuple(v) for k, v in data.items()
             if k != "phases" and isinstance(v, list) and v and isinstance(v[0], dict)}
    return Vocabulary(data["name"], data["procedure"], data.get("title", data["name"]), phases, lists, items)


def available() -> list[str]:
    return sorted(p.stem for p in _HERE.glob("*.toml"))


# Which phase vocabulary a procedure uses when its dataset has none of its own.
_PROCEDURE_PHASES = {"laparoscopic_cholecystectomy": "resgo", "laparoscopic_gastric_bypass": "multibypass140"}
# Datasets without phases of their own whose frames carry another dataset's phase labels.
_DATASET_PHASES = {"cholect50": "cholec80"}


def vocabulary_for(task: str, dataset: str | None = None, procedure: str | None = None) -> Vocabulary:
    """The phase vocabulary for ``task`` on a case: ResGo A-D for the Go Zone task; otherwise the dataset's
    own vocabulary when it has phases (cholec80, multibypass140), else the procedure's default."""
    if task == "gozone":
        return load("resgo")
    if dataset and dataset in available() and load(dataset).phases:
        return load(dataset)
    if dataset in _DATASET_PHASES:
        return load(_DATASET_PHASES[dataset])
    return load(_PROCEDURE_PHASES.get(procedure or "", "resgo"))
