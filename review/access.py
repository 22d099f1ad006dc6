"""Look-ups the review services share: a study, its models in position order, the model of a prediction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import NotFound
from db.schema import Model, Prediction, Study, StudyModel

T = TypeVar("T")


def get_study(session: Session, study_id: int) -> Study:
    """The study ``study_id``; NotFound otherwise."""
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"There is no study {study_id}.")
    return study


def study_models(session: Session, study_id: int) -> list[tuple[StudyModel, Model]]:
    """(StudyModel, Model) of the study, by position."""
    rows = session.execute(select(StudyModel, Model).join(Model, Model.id == StudyModel.model_id)
                           .where(StudyModel.study_id == study_id).order_by(StudyModel.position))
    return [(row[0], row[1]) for row in rows]


def prediction_models(session: Session, study_id: int) -> dict[int, int]:
    """{prediction id: model id} for every prediction of the study's runs."""
    runs = {sm.run_id: sm.model_id for sm, _ in study_models(session, study_id)}
    rows = session.execute(select(Prediction.id, Prediction.run_id).where(Prediction.run_id.in_(list(runs))))
    return {prediction_id: runs[run_id] for prediction_id, run_id in rows}


def chunks(values: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    """``values`` in slices of ``size`` (keeps IN lists within every database's parameter limits)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def unique(values: Iterable[T]) -> list[T]:
    """``values`` without repeats, in first-seen order."""
    return list(dict.fromkeys(values))
