"""Finding cases by what users filter on: dataset, procedure, video, split, tag, reference phase, key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from db.schema import Case, CaseTag, Label


@dataclass(frozen=True)
class CaseFilter:
    dataset: str | None = None
    procedure: str | None = None
    video: str | None = None
    split: str | None = None
    tags: tuple[str, ...] = ()
    phase: str | None = None
    keys: tuple[str, ...] = ()
    limit: int | None = None

    def query(self) -> Select[tuple[int]]:
        query = select(Case.id).order_by(Case.dataset, Case.video, Case.frame_index, Case.key)
        for column, value in ((Case.dataset, self.dataset), (Case.procedure, self.procedure),
                              (Case.video, self.video), (Case.split, self.split)):
            if value is not None:
                query = query.where(column == value)
        for tag in self.tags:
            query = query.where(Case.id.in_(select(CaseTag.case_id).where(CaseTag.tag == tag)))
        if self.phase is not None:
            query = query.where(Case.id.in_(select(Label.case_id).where(Label.is_current,
                                                                       Label.phase == self.phase)))
        if self.keys:
            query = query.where(Case.key.in_(self.keys))
        return query.limit(self.limit) if self.limit is not None else query


def find_case_ids(session: Session, case_filter: CaseFilter) -> Sequence[int]:
    return session.scalars(case_filter.query()).all()
