"""Every model the app knows: the registry file's, and replay models that imports registered."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.settings import Settings
from db.schema import Model
from models.backends import ModelSpec
from models.registry import load_registry


def all_specs(session: Session, settings: Settings) -> dict[str, ModelSpec]:
    """Registry models first (they win on a name clash), then imported replay models from the database."""
    specs = load_registry(settings.model_registry) if settings.model_registry else {}
    for model in session.scalars(select(Model).where(Model.backend == "replay").order_by(Model.name)):
        if model.name not in specs:
            specs[model.name] = ModelSpec(name=model.name, backend="replay", path=model.location,
                                          family=model.family or "other",
                                          box_convention=model.box_convention or "pixels",
                                          color=model.color or "#7f7f7f")
    return specs
