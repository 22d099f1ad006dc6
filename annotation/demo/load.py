"""Load the synthetic demo pack through the same importers as real data (idempotent)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation.demo.users import ensure_demo_users
from annotation.importers import CaseMeta, ImportSummary
from annotation.importers.labelme import import_labelme
from annotation.importers.predictions import import_predictions
from db.frames import FrameStore
from db.schema import AnnotationAssignment, Case
from db.users import find_user
from models.runner import parse_pending

DEMO_DATASET = "demo"
# The demo videos split like ResGo: by video, never by frame.
DEMO_SPLITS = {"demo_vid01": "train", "demo_vid02": "test"}


def load_demo_pack(session: Session, store: FrameStore, folder: Path, *, actor: str = "system",
                   user_password: str | None = None) -> ImportSummary:
    """Write the demo files under ``folder`` and import frames, reference labels and the three models' outputs.
    With ``user_password``, also create the demo accounts that are missing (see annotation.demo.users)."""
    from annotation.demo import write_demo_pack

    if user_password is not None:
        ensure_demo_users(session, user_password, actor=actor)

    files = write_demo_pack(Path(folder))
    summary = ImportSummary("demo pack")
    for video_dir in sorted(p for p in files.frames_dir.iterdir() if p.is_dir()):
        meta = CaseMeta(DEMO_DATASET, video=video_dir.name, split=DEMO_SPLITS.get(video_dir.name),
                        tags=("synthetic",))
        summary.merge(import_labelme(session, store, [video_dir], meta, actor=actor))
    summary.merge(import_predictions(session, files.predictions, actor=actor))
    parse_pending(session)
    if user_password is not None:
        ensure_demo_assignments(session)
    return summary


def ensure_demo_assignments(session: Session) -> int:
    """Give the demo annotator the test video's cases to correct (those not assigned to anybody yet)."""
    annotator = find_user(session, "annotator1")
    if annotator is None:
        return 0
    assigned = select(AnnotationAssignment.case_id)
    case_ids = session.scalars(select(Case.id).where(Case.dataset == DEMO_DATASET, Case.video == "demo_vid02",
                                                     Case.id.not_in(assigned)).order_by(Case.key)).all()
    session.add_all(AnnotationAssignment(case_id=case_id, annotator_id=annotator.id) for case_id in case_ids)
    session.flush()
    return len(case_ids)
