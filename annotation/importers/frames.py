"""Import still frames from files or folders."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.orm import Session

from annotation.importers.common import (
    CaseMeta,
    ImportSummary,
    add_case,
    expand_image_paths,
    item_scope,
)
from db import audit
from db.frames import FrameStore, ImageRejected

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def position_from_path(root: Path, path: Path) -> tuple[str | None, int | None]:
    """(video, frame index) read from ``video01/frame_000125.png``: the parent folder and the last number."""
    relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    video = relative.parent.as_posix() if relative.parent != Path(".") else None
    match = _LAST_NUMBER.search(path.stem)
    return video, int(match.group(1)) if match else None


def import_frames(session: Session, store: FrameStore, sources: list[Path], meta: CaseMeta, *,
                  actor: str = "system") -> ImportSummary:
    """Import every image file of ``sources`` (files, or folders walked recursively) as cases."""
    summary = ImportSummary("frames")
    found = list(expand_image_paths([Path(s) for s in sources]))
    roots = dict((path, root) for root, path in found)
    for path, image in store.validate_files(path for _, path in found):
        root = roots[path]
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        with item_scope(session, store, summary, name):
            if isinstance(image, ImageRejected):
                raise image
            video, index = position_from_path(root, path)
            case_meta = meta.with_position(video, index)
            fallback = Path(name).with_suffix("").as_posix()
            case, created = add_case(session, store, image, case_meta, fallback_key=fallback, source_name=name)
            (summary.imported if created else summary.duplicates).append(name)
    audit.record(session, "import.frames", actor_label=actor, payload={"sources": [str(s) for s in sources],
                                                                        "dataset": meta.dataset, **summary.counts})
    return summary
