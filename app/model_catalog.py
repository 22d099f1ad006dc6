"""Every model the app knows: the registry file's, and replay models that imports registered."""

from __future__ import annotations

import logging
import re
from typing import get_args

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.settings import Settings
from db.schema import Model
from models.backends import ModelSpec
from models.registry import load_registry

log = logging.getLogger("surgreview.models")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


def all_specs(session: Session, settings: Settings) -> dict[str, ModelSpec]:
    """Registry models first (they win on a name clash), then imported replay models from the database."""
    specs = load_registry(settings.model_registry) if settings.model_registry else {}
    for model in session.scalars(select(Model).where(Model.backend == "replay").order_by(Model.name)):
        if model.name not in specs:
            try:
                specs[model.name] = _replay_spec(model)
            except ValidationError:  # one bad row (an old import) must not take every model list down
                log.warning("replay model %r cannot be used (invalid name or settings)", model.name)
    return specs


def _replay_spec(model: Model) -> ModelSpec:
    family = model.family if model.family in get_args(ModelSpec.model_fields["family"].annotation) else "other"
    color = model.color if model.color and _COLOR.fullmatch(model.color) else "#7f7f7f"
    return ModelSpec(name=model.name, backend="replay", path=model.location, family=family,
                     box_convention=model.box_convention or "pixels", color=color)
