"""Setting up blind review studies: models, reviewers, cases, balanced assignment, letters, flags.

Services take a session and the acting user (an admin here), check roles on the server and never commit.
A case without a usable prediction from every model is kept as a StudyCase whose ``missing`` lists those
models and is never assigned; outputs that name a model or vendor are flagged on their StudyCase for the
admin. The reviewer's side (queue, judging, reveal) lives in ``review.judging`` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from db.audit import record
from db.cases import CaseFilter, find_case_ids
from db.errors import Conflict, DomainError, NotFound
from db.schema import (
    REVEAL_POLICIES,
    TASKS,
    Case,
    Label,
    Model,
    Prediction,
    ReviewItem,
    Run,
    Study,
    StudyCase,
    StudyModel,
    StudyReviewer,
    User,
)
from db.text import storable
from db.users import Actor, find_user, require
from review.access import chunks, get_study, study_models, unique
from review.assignment import LETTERS, extend, letter_maps
from review.blinding import blind_output, identity_leaks, new_token, output_text
from review.informativeness import informativeness
from review.judging import (
    InvalidJudgment,
    Progress,
    QueueState,
    checked_rubric,
    frame_for,
    get_item,
    my_judgment,
    next_item,
    reveal,
    skip_item,
    submit_judgment,
)

__all__ = ["InvalidJudgment", "Progress", "QueueState", "StudySetup", "add_cases", "add_reviewers",
           "close_study", "create_study", "frame_for", "get_item", "list_studies", "my_judgment", "next_item",
           "reveal", "skip_item", "submit_judgment"]

NAME_MAX = 200  # Study.name's width


@dataclass
class StudySetup:
    """What creating a study or adding cases did: cases assigned (in priority order), cases listed as missing
    a model's prediction ({case key: [model names]}), identity-leak flags ({case key: [{"model", "terms"}]}),
    and the number of review items made."""

    study: Study
    assigned: list[int] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    leaks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    items: int = 0
    # Informativeness of each assigned case ({case key: score in 0-1}), in assignment order.
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class _Survey:
    """What the predictions say about candidate cases: per case {model id: (prediction id, parsed)}."""

    outputs: dict[int, dict[int, tuple[int, dict[str, Any] | None]]]
    referenced: set[int]


def create_study(session: Session, actor: Actor, *, name: str, task: str, model_names: Sequence[str],
                 case_filter: CaseFilter, reviewers: Sequence[str], k: int,
                 rubric: Mapping[str, Any] | None = None, reveal_policy: str = "never", seed: int = 0,
                 order_by_informativeness: bool = False, limit: int | None = None) -> StudySetup:
    """A running study of ``task`` comparing 2-5 models by name, each case of ``case_filter`` judged by ``k``
    of the ``reviewers`` (usernames holding the reviewer role). With ``order_by_informativeness`` the most
    informative cases are chosen first (up to ``limit``) and come first in every queue; otherwise cases keep
    the filter's order and queues are shuffled. Returns the StudySetup (missing cases listed, leaks
    flagged)."""
    require(actor, "admin")
    _check_settings(name, task, model_names, reviewers, k, reveal_policy, limit, seed)
    if session.scalar(select(Study.id).where(Study.name == name.strip())) is not None:
        raise Conflict(f"A study called {name.strip()!r} exists already.")
    models = [_model(session, model_name) for model_name in model_names]
    users = [_reviewer(session, username) for username in unique(reviewers)]
    study = Study(name=name.strip(), task=task, status="running", reviewers_per_case=k,
                  rubric=checked_rubric(rubric), reveal_policy=reveal_policy, seed=seed,
                  case_filter=_filter_json(case_filter), order_by_informativeness=order_by_informativeness,
                  case_limit=limit, created_by=actor.user_id)
    session.add(study)
    session.flush()
    session.add_all(StudyModel(study_id=study.id, model_id=model.id, run_id=_run_for(session, model, task).id,
                               position=position) for position, model in enumerate(models))
    session.add_all(StudyReviewer(study_id=study.id, user_id=user.id) for user in users)
    session.flush()
    setup = _add(session, study, find_case_ids(session, case_filter), limit)
    record(session, "study.create", actor_id=actor.user_id, entity_type="study", entity_id=study.id,
           payload={"models": list(model_names), "reviewers": len(users), "cases": len(setup.assigned),
                    "missing": len(setup.missing), "leaks": len(setup.leaks)})
    return setup


def add_cases(session: Session, actor: Actor, study_id: int, case_filter: CaseFilter,
              limit: int | None = None) -> StudySetup:
    """Add the cases of ``case_filter`` not yet in the study (up to ``limit``, chosen as at creation) and
    assign them to ``k`` reviewers each, the least-loaded first. Existing items are never changed."""
    require(actor, "admin")
    study = _open_study(session, study_id)
    known = set(session.scalars(select(StudyCase.case_id).where(StudyCase.study_id == study.id)))
    candidates = [case_id for case_id in find_case_ids(session, case_filter) if case_id not in known]
    setup = _add(session, study, candidates, limit)
    record(session, "study.add_cases", actor_id=actor.user_id, entity_type="study", entity_id=study.id,
           payload={"cases": len(setup.assigned), "missing": len(setup.missing)})
    return setup


def add_reviewers(session: Session, actor: Actor, study_id: int, usernames: Sequence[str]) -> list[int]:
    """Add reviewers to a study; returns the ids of those new to it. They get no existing item (items never
    move): cases added later go to the least-loaded reviewers, so the new ones come first."""
    require(actor, "admin")
    study = _open_study(session, study_id)
    present = set(session.scalars(select(StudyReviewer.user_id).where(StudyReviewer.study_id == study.id)))
    users = [_reviewer(session, name) for name in unique(usernames)]
    added = [user.id for user in users if user.id not in present]
    session.add_all(StudyReviewer(study_id=study.id, user_id=user_id) for user_id in added)
    session.flush()
    record(session, "study.add_reviewers", actor_id=actor.user_id, entity_type="study", entity_id=study.id,
           payload={"reviewers": len(added)})
    return added


def close_study(session: Session, actor: Actor, study_id: int) -> Study:
    """Close a study: judgments can no longer be stored or revised."""
    require(actor, "admin")
    study = get_study(session, study_id)
    study.status = "closed"
    session.flush()
    record(session, "study.close", actor_id=actor.user_id, entity_type="study", entity_id=study.id)
    return study


def list_studies(session: Session, actor: Actor) -> list[Study]:
    """Every study, newest first (admins only)."""
    require(actor, "admin")
    return list(session.scalars(select(Study).order_by(Study.created_at.desc(), Study.id.desc())))


def _add(session: Session, study: Study, case_ids: Sequence[int], limit: int | None) -> StudySetup:
    """Survey ``case_ids``, store them as StudyCases (complete or missing), choose and assign the complete."""
    pairs = study_models(session, study.id)
    names = {model.id: model.name for _, model in pairs}
    survey = _survey(session, [sm.run_id for sm, _ in pairs], case_ids)
    keys = _case_keys(session, case_ids)
    setup = StudySetup(study)
    scores, rows = {}, []
    for case_id in case_ids:
        outputs = survey.outputs.get(case_id, {})
        missing = [names[model_id] for model_id in names if model_id not in outputs]
        leaks = [] if missing else _leaks(study.task, outputs, names, pairs)
        if not missing:
            parsed = [outputs[model_id][1] for model_id in names]
            scores[case_id] = informativeness(study.task, parsed, case_id in survey.referenced)
        rows.append({"study_id": study.id, "case_id": case_id, "informativeness": scores.get(case_id),
                     "missing": missing, "identity_leaks": leaks})
        if missing:
            setup.missing[keys[case_id]] = missing
        if leaks:
            setup.leaks[keys[case_id]] = leaks
    chosen = _choose(list(scores), scores, study.order_by_informativeness, limit)
    chosen_set = set(chosen)
    rows = [row for row in rows if row["missing"] or row["case_id"] in chosen_set]
    for batch in chunks(rows):
        session.execute(insert(StudyCase), list(batch))
    setup.assigned = chosen
    setup.scores = {keys[case_id]: scores[case_id] for case_id in chosen}
    setup.items = _assign(session, study, chosen, survey)
    return setup


def _choose(case_ids: list[int], scores: Mapping[int, float], by_score: bool, limit: int | None) -> list[int]:
    """The cases to assign, in priority order: most informative first when asked, else as given."""
    ordered = sorted(case_ids, key=lambda c: -scores[c]) if by_score else list(case_ids)
    return ordered if limit is None else ordered[:limit]


def _assign(session: Session, study: Study, case_ids: list[int], survey: _Survey) -> int:
    """Make the review items of ``case_ids`` on top of the study's existing ones; returns how many."""
    reviewers = list(session.scalars(select(StudyReviewer.user_id).where(StudyReviewer.study_id == study.id)
                                     .order_by(StudyReviewer.user_id)))
    if study.reviewers_per_case > len(reviewers):
        raise DomainError(f"The study needs {study.reviewers_per_case} reviewers per case; "
                          f"it has {len(reviewers)}.")
    existing = session.execute(select(ReviewItem.case_id, ReviewItem.reviewer_id, ReviewItem.position,
                                      ReviewItem.letter_map).where(ReviewItem.study_id == study.id)).all()
    model_of = {prediction_id: model_id for outputs in survey.outputs.values()
                for model_id, (prediction_id, _) in outputs.items()}
    model_of |= _prediction_models(session, [v for row in existing for v in row.letter_map.values()
                                             if v not in model_of])
    model_ids = [sm.model_id for sm, _ in study_models(session, study.id)]
    seed = study.seed * 1_000_003 + len(existing)  # a new, reproducible draw per extension
    items = extend([row[:3] for row in existing], case_ids, reviewers, study.reviewers_per_case, seed,
                   keep_order=study.order_by_informativeness)
    maps = letter_maps(items, model_ids, seed, existing=[
        (row.reviewer_id, {letter: model_of[p] for letter, p in row.letter_map.items()}) for row in existing])
    rows = [{"study_id": study.id, "case_id": case_id, "reviewer_id": reviewer_id, "position": position,
             "letter_map": {letter: survey.outputs[case_id][model][0] for letter, model in mapping.items()},
             "token": new_token(), "frame_token": new_token(), "state": "open"}
            for (case_id, reviewer_id, position), mapping in zip(items, maps, strict=True)]
    for batch in chunks(rows, 1000):
        session.execute(insert(ReviewItem), list(batch))
    return len(rows)


def _survey(session: Session, run_ids: list[int], case_ids: Sequence[int]) -> _Survey:
    """Usable predictions (no error) of the study's runs for ``case_ids``; which cases have a reference."""
    wanted, outputs = set(case_ids), {}
    model_of_run = dict(session.execute(select(Run.id, Run.model_id).where(Run.id.in_(run_ids))).all())
    rows = session.execute(select(Prediction.case_id, Prediction.run_id, Prediction.id, Prediction.parsed)
                           .where(Prediction.run_id.in_(run_ids), Prediction.error.is_(None)))
    for case_id, run_id, prediction_id, parsed in rows:
        if case_id in wanted:
            outputs.setdefault(case_id, {})[model_of_run[run_id]] = (prediction_id, parsed)
    referenced = {case_id for case_id in session.scalars(select(Label.case_id).where(Label.is_current))
                  if case_id in wanted}
    return _Survey(outputs, referenced)


def _leaks(task: str, outputs: Mapping[int, tuple[int, Any]], names: Mapping[int, str],
           pairs: list[tuple[StudyModel, Model]]) -> list[dict[str, Any]]:
    """Identity-leak flags of one case: the words a reviewer would see, scanned for model and vendor names."""
    extra = tuple(n for _, model in pairs for n in (model.name, model.family) if n)
    flags = []
    for model_id, (_, parsed) in outputs.items():
        terms = identity_leaks(output_text(blind_output(LETTERS[0], task, parsed or {}, None)), extra)
        if terms:
            flags.append({"model": names[model_id], "terms": terms})
    return flags


def _prediction_models(session: Session, prediction_ids: list[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for batch in chunks(unique(prediction_ids)):
        found |= dict(session.execute(select(Prediction.id, Run.model_id)
                                      .join(Run, Run.id == Prediction.run_id)
                                      .where(Prediction.id.in_(list(batch)))).all())
    return found


def _case_keys(session: Session, case_ids: Sequence[int]) -> dict[int, str]:
    keys: dict[int, str] = {}
    for batch in chunks(list(case_ids)):
        keys |= dict(session.execute(select(Case.id, Case.key).where(Case.id.in_(list(batch)))).all())
    return keys


def _check_settings(name: str, task: str, model_names: Sequence[str], reviewers: Sequence[str], k: int,
                    reveal_policy: str, limit: int | None, seed: int) -> None:
    if not name or not name.strip():
        raise DomainError("A study needs a name.")
    if len(name.strip()) > NAME_MAX or storable(name) != name:  # the column's width; what databases store
        raise DomainError(f"A study name has at most {NAME_MAX} characters and no NUL or lone surrogate.")
    if task not in TASKS:
        raise DomainError(f"Unknown task {task!r}; tasks are {', '.join(TASKS)}.")
    if not 2 <= len(unique(model_names)) == len(model_names) <= len(LETTERS):
        raise DomainError(f"A study compares 2 to {len(LETTERS)} different models.")
    if reveal_policy not in REVEAL_POLICIES:
        raise DomainError(f"Reveal policy is one of {', '.join(REVEAL_POLICIES)}, not {reveal_policy!r}.")
    if not 1 <= k <= len(unique(reviewers)):
        raise DomainError(f"Each case needs 1 to {len(unique(reviewers))} reviewers (the study's), not {k}.")
    if limit is not None and limit < 1:
        raise DomainError("A case limit is at least 1.")
    if not 0 <= seed < 2**31:
        raise DomainError("A seed is a whole number from 0 to 2147483647.")


def _model(session: Session, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"There is no model {name!r}.")
    return model


def _run_for(session: Session, model: Model, task: str) -> Run:
    """The model's run of ``task`` with the most usable predictions (the newest among equals)."""
    usable = func.count(Prediction.id)
    row = session.execute(select(Run, usable).outerjoin(Prediction, (Prediction.run_id == Run.id)
                                                        & Prediction.error.is_(None))
                          .where(Run.model_id == model.id, Run.task == task).group_by(Run.id)
                          .order_by(usable.desc(), Run.id.desc()).limit(1)).first()
    if row is None:
        raise NotFound(f"The model {model.name!r} has no predictions for the {task} task.")
    return row[0]


def _reviewer(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"There is no user {username!r}.")
    if not user.is_active or "reviewer" not in user.role_names:
        raise DomainError(f"{user.username!r} is not an active reviewer.")
    return user


def _filter_json(case_filter: CaseFilter) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(case_filter).items()
            if v not in (None, ())}


def _open_study(session: Session, study_id: int) -> Study:
    study = get_study(session, study_id)
    if study.status == "closed":
        raise Conflict("This study is closed.")
    return study
