"""Audit events: who did what to which entity, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.schema import AuditEvent


def record(session: Session, action: str, *, actor_id: int | None = None, actor_label: str | None = None,
           entity_type: str | None = None, entity_id: object = None,
           payload: dict[str, Any] | None = None) -> AuditEvent:
    event = AuditEvent(actor_id=actor_id, actor_label=actor_label, action=action, entity_type=entity_type,
                       entity_id=None if entity_id is None else str(entity_id), payload=payload or {})
    session.add(event)
    return event
