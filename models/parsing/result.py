"""What the parser returns: a ParsedOutput per raw model text, and its JSON form for the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.boxes import Box

JSON_VERSION = 1


@dataclass(frozen=True)
class ParsedBox:
    """One box of an answer in canonical original-frame pixels, saying what fitting it changed."""

    label: str | None
    box: tuple[float, float, float, float]
    clipped: bool = False
    swapped: bool = False

    def as_box(self) -> Box:
        return Box(*self.box)


@dataclass
class ParsedOutput:
    """The readable parts of one model output. Every field may be empty; ``warnings`` says what was odd.

    For a two-turn Go Zone output, ``thinking``, ``levels``, ``task_level``, ``answer``, ``rationale`` and
    ``boxes`` come from the Go Zone turn (the last), while ``phase``, ``phase_raw`` and ``phase_thinking``
    come from the phase turn (the first).
    """

    thinking: str | None = None
    phase_thinking: str | None = None
    levels: dict[int, str] = field(default_factory=dict)
    task_level: int | None = None
    answer: str | None = None
    phase: str | None = None
    phase_raw: str | None = None
    triplets: list[tuple[str, str, str]] = field(default_factory=list)
    cvs: dict[str, bool] = field(default_factory=dict)
    action: str | None = None
    boxes: list[ParsedBox] = field(default_factory=list)
    rationale: dict[str, str] = field(default_factory=dict)
    turns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (level keys become strings, tuples become lists)."""
        return {
            "version": JSON_VERSION,
            "thinking": self.thinking,
            "phase_thinking": self.phase_thinking,
            "levels": {str(level): text for level, text in sorted(self.levels.items())},
            "task_level": self.task_level,
            "answer": self.answer,
            "phase": self.phase,
            "phase_raw": self.phase_raw,
            "triplets": [list(triplet) for triplet in self.triplets],
            "cvs": dict(self.cvs),
            "action": self.action,
            "boxes": [{"label": b.label, "box": list(b.box), "clipped": b.clipped, "swapped": b.swapped}
                      for b in self.boxes],
            "rationale": dict(self.rationale),
            "turns": list(self.turns),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParsedOutput:
        """The ParsedOutput that ``to_json`` wrote; missing keys read as empty."""
        return cls(
            thinking=data.get("thinking"),
            phase_thinking=data.get("phase_thinking"),
            levels={int(level): text for level, text in (data.get("levels") or {}).items()},
            task_level=data.get("task_level"),
            answer=data.get("answer"),
            phase=data.get("phase"),
            phase_raw=data.get("phase_raw"),
            triplets=[tuple(triplet) for triplet in data.get("triplets") or ()],
            cvs=dict(data.get("cvs") or {}),
            action=data.get("action"),
            boxes=[ParsedBox(b.get("label"), tuple(float(v) for v in b["box"]), bool(b.get("clipped")),
                             bool(b.get("swapped"))) for b in data.get("boxes") or ()],
            rationale=dict(data.get("rationale") or {}),
            turns=list(data.get("turns") or ()),
            warnings=list(data.get("warnings") or ()),
        )
