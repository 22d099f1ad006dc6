"""Counts of what the database holds, for the landing page and `surgreview` status output."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.schema import Case, Label, Model, Prediction


def overview(session: Session) -> dict[str, object]:
    """{"cases", "labels", "models", "predictions", "datasets": {name: cases}}."""
    datasets = dict(session.execute(select(Case.dataset, func.count()).group_by(Case.dataset)).all())
    return {
        "cases": session.scalar(select(func.count()).select_from(Case)),
        "labels": session.scalar(select(func.count()).select_from(Label).where(Label.is_current)),
        "models": session.scalar(select(func.count()).select_from(Model)),
        "predictions": session.scalar(select(func.count()).select_from(Prediction)),
        "datasets": datasets,
    }
