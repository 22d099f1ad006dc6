"""Frames uploaded through the web app: each valid image becomes a case of dataset ``uploads``.

The key is ``uploads/<first 16 hex of the sha256>``, so uploading the same bytes again finds the same case.
Each file is validated by the frame store and imported in its own savepoint: a corrupt or oversized file is
rejected with its reason and the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from annotation.importers.common import CaseMeta, ImportSummary, add_case, item_scope
from db import audit
from db.frames import FrameStore, ImageRejected

UPLOAD_DATASET = "uploads"
KEY_HEX = 16


@dataclass(frozen=True)
class UploadedCase:
    name: str
    case_id: int
    key: str
    created: bool


@dataclass
class UploadResult:
    cases: list[UploadedCase] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        """One line per file: the case it became, or why it was rejected."""
        lines = [f"{c.name}: {'new case' if c.created else 'already uploaded as'} {c.key}"
                 for c in self.cases]
        lines += [f"{name}: rejected - {reason}" for name, reason in self.rejected]
        return "\n".join(lines) or "no files"


def import_uploads(session: Session, store: FrameStore, files: Sequence[tuple[str, Path]], *,
                   procedure: str = "laparoscopic_cholecystectomy", actor_id: int | None = None,
                   actor: str = "system") -> UploadResult:
    """Import ``(display name, path)`` pairs as upload cases; returns the cases and the rejections."""
    result, summary = UploadResult(), ImportSummary("uploads")
    meta = CaseMeta(UPLOAD_DATASET, procedure)
    for name, path in files:
        with item_scope(session, store, summary, name):
            try:
                image = store.validate_file(Path(path))
            except FileNotFoundError:
                raise ImageRejected("the uploaded file is gone; upload it again") from None
            except OSError as exc:
                raise ImageRejected(f"cannot read the file: {exc.strerror or exc}") from None
            case, created = add_case(session, store, image, meta, fallback_key=image.sha256[:KEY_HEX],
                                     source_name=name)
            result.cases.append(UploadedCase(name, case.id, case.key, created))
    result.rejected = list(summary.rejected)
    audit.record(session, "import.uploads", actor_id=actor_id, actor_label=actor,
                 payload={"cases": [c.key for c in result.cases], "rejected": len(result.rejected)})
    return result
