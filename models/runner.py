"""Run a model over cases: batched, cached, resumable, one failure never stops the run.

The cache key is (model, task, prompt version, parameters) -> a Run row, plus the frame: a case whose frame
already has a good prediction in that run is served from it, not recomputed. ``run_predictions`` commits
batch by batch (a crash loses at most one batch; the next call resumes); ``predict_batch`` takes a session and
never commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.audit import record
from db.engine import Database
from db.frames import FrameStore
from db.schema import Case, Frame, Model, Prediction, Run, utcnow
from db.text import storable
from models.backends.base import Backend, GenerationRequest, GenerationResult, ModelSpec
from models.parsing import parse_output
from models.prompts import TURN_SEPARATOR, PromptContext, PromptTemplate, template_for
from models.vocabularies import vocabulary_for


def params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def ensure_model(session: Session, spec: ModelSpec) -> Model:
    """The Model row for ``spec``, created or brought up to date with the registry."""
    model = session.scalar(select(Model).where(Model.name == spec.name))
    if model is None:
        model = Model(name=spec.name)
        session.add(model)
    model.backend, model.family, model.box_convention, model.color = (spec.backend, spec.family,
                                                                      spec.box_convention, spec.color)
    model.location = str(spec.path or spec.url or "") or None
    model.settings = spec.model_dump(mode="json", exclude={"name", "backend", "family", "box_convention", "color"})
    session.flush()
    return model


def ensure_run(session: Session, model: Model, task: str, prompt_version: str, params: dict[str, Any],
               *, source: str | None = None) -> Run:
    digest = params_digest(params)
    run = session.scalar(select(Run).where(Run.model_id == model.id, Run.task == task,
                                           Run.prompt_version == prompt_version, Run.params_sha256 == digest))
    if run is None:
        run = Run(model_id=model.id, task=task, prompt_version=prompt_version, params=params,
                  params_sha256=digest, status="running", source=source)
        session.add(run)
        session.flush()
    return run


@dataclass
class RunProgress:
    total: int = 0
    cached: int = 0
    predicted: int = 0
    failed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"{self.total} cases: {self.cached} from cache, {self.predicted} predicted, {self.failed} failed"]
        lines += [f"  failed {case}: {error}" for case, error in self.errors]
        return "\n".join(lines)


def split_cached(session: Session, run: Run, cases: Sequence[Case]) -> tuple[list[Case], list[Case]]:
    """(cases served from the cache, cases still to predict). A good prediction of the same frame in the
    same run is copied to a case that lacks one; failed predictions are predicted again. A replay model's
    outputs were recorded elsewhere under their own prompt version: any run of it on the task will do."""
    ids = [c.id for c in cases]
    done = {p.case_id: p for p in session.scalars(select(Prediction).where(
        Prediction.run_id == run.id, Prediction.case_id.in_(ids)))}
    source_runs = (select(Run.id).where(Run.model_id == run.model_id, Run.task == run.task)
                   if run.model.backend == "replay" else select(Run.id).where(Run.id == run.id))
    frames = {row.frame_id: row for row in session.execute(
        select(Case.frame_id, Prediction).join(Prediction, Prediction.case_id == Case.id).where(
            Prediction.run_id.in_(source_runs), Prediction.error.is_(None),
            Case.frame_id.in_({c.frame_id for c in cases})))}
    cached, todo = [], []
    for case in cases:
        existing = done.get(case.id)
        if existing is not None and existing.error is None:
            cached.append(case)
        elif existing is None and case.frame_id in frames:
            source = frames[case.frame_id].Prediction
            session.add(Prediction(run_id=run.id, case_id=case.id, raw_text=source.raw_text, parsed=source.parsed,
                                   phase=source.phase, answer=source.answer, latency_ms=0.0))
            cached.append(case)
        else:
            todo.append(case)
    session.flush()
    return cached, todo


def _requests(store: FrameStore, cases: Sequence[Case], template: PromptTemplate) -> list[GenerationRequest]:
    requests = []
    for case in cases:
        context = PromptContext(vocabulary=vocabulary_for(template.task, case.dataset, case.procedure))
        requests.append(GenerationRequest(template.first_turn(context), [store.open_image(case.frame, decode=False)],
                                          key=(case.key, template.task)))
    return requests


def _second_turns(backend: Backend, model: Model, template: PromptTemplate, cases: Sequence[Case],
                  requests: list[GenerationRequest], first: list[GenerationResult]) -> list[GenerationResult]:
    """Phase-then-go: each case's turn 2 carries the definition of the phase its turn 1 chose."""
    follow_ups, positions = [], []
    for i, (case, request, result) in enumerate(zip(cases, requests, first, strict=True)):
        if result.error:
            continue
        vocabulary = vocabulary_for(template.task, case.dataset, case.procedure)
        phase = parse_output(result.text, task="phase", box_convention=model.box_convention or "pixels",
                             width=case.frame.width, height=case.frame.height, vocabulary=vocabulary).phase
        messages = template.second_turn(request.messages, result.text, phase, PromptContext(vocabulary))
        follow_ups.append(GenerationRequest(messages, request.images, key=request.key))
        positions.append(i)
    combined = list(first)
    for i, second in zip(positions, backend.generate(follow_ups), strict=True):
        one = first[i]
        combined[i] = GenerationResult(
            text=f"{one.text}\n{TURN_SEPARATOR}\n{second.text}", error=second.error,
            latency_ms=(one.latency_ms or 0) + (second.latency_ms or 0),
            prompt_tokens=(one.prompt_tokens or 0) + (second.prompt_tokens or 0),
            completion_tokens=(one.completion_tokens or 0) + (second.completion_tokens or 0),
            input_size=second.input_size or one.input_size, key=one.key)
    return combined


def store_result(session: Session, run: Run, case: Case, result: GenerationResult) -> Prediction:
    """Write one result (parsed, or its error) as the case's prediction in ``run``."""
    prediction = session.scalar(select(Prediction).where(Prediction.run_id == run.id,
                                                         Prediction.case_id == case.id))
    if prediction is None:
        prediction = Prediction(run_id=run.id, case_id=case.id)
        session.add(prediction)
    prediction.raw_text, prediction.error = storable(result.text), storable(result.error)
    prediction.latency_ms, prediction.created_at = result.latency_ms, utcnow()
    prediction.prompt_tokens, prediction.completion_tokens = result.prompt_tokens, result.completion_tokens
    if result.error is None:
        apply_parse(prediction, run, case, input_size=result.input_size)
    session.flush()
    return prediction


def apply_parse(prediction: Prediction, run: Run, case: Case, *,
                input_size: tuple[int, int] | None = None) -> None:
    """Fill the parsed columns of ``prediction`` from its raw text (the parser never raises)."""
    parsed = parse_output(prediction.raw_text, task=run.task, box_convention=run.model.box_convention or "pixels",
                          width=case.frame.width, height=case.frame.height,
                          vocabulary=vocabulary_for(run.task, case.dataset, case.procedure), input_size=input_size)
    data = parsed.to_json()
    if input_size is not None:
        data["input_size"] = list(input_size)
    prediction.parsed, prediction.phase, prediction.answer = data, parsed.phase, parsed.answer


def parse_pending(session: Session) -> int:
    """Parse every stored prediction that has raw text but no parsed form yet (imports of models run
    elsewhere); returns how many were parsed. Replay predictions have no input size: Qwen2.5-VL pixel boxes
    are then decoded with the processor's default resize."""
    pending = session.scalars(select(Prediction).where(Prediction.parsed.is_(None), Prediction.error.is_(None),
                                                       Prediction.raw_text.is_not(None))).all()
    for prediction in pending:
        apply_parse(prediction, prediction.run, prediction.case)
    session.flush()
    return len(pending)


DEFAULT_BATCH_SIZE = 4


def predict_batch(session: Session, backend: Backend, run: Run, store: FrameStore,
                  cases: Sequence[Case]) -> list[Prediction]:
    """Generate for ``cases`` in one batch (two for phase-then-go) and store every result or error."""
    template = template_for(run.task)
    requests, failed_images = [], {}
    usable = []
    for case in cases:
        try:
            requests += _requests(store, [case], template)
            usable.append(case)
        except OSError as exc:  # a frame file that went missing or unreadable
            failed_images[case.id] = f"cannot read the frame: {exc}"
    results = backend.generate(requests) if requests else []
    if template.turns == 2:
        results = _second_turns(backend, run.model, template, usable, requests, results)
    stored = [store_result(session, run, case, result) for case, result in zip(usable, results, strict=True)]
    for case in cases:
        if case.id in failed_images:
            stored.append(store_result(session, run, case, GenerationResult(error=failed_images[case.id])))
    return stored


def run_predictions(database: Database, store: FrameStore, backend: Backend, task: str, case_ids: Sequence[int],
                    *, batch_size: int | None = None,
                    on_progress: Callable[[RunProgress], None] | None = None,
                    actor: str = "system") -> RunProgress:
    """Predict ``task`` for ``case_ids`` with ``backend``, committing after every batch. Resumable.
    ``batch_size`` defaults to the backend's ``preferred_batch_size`` (a server backend wants enough
    requests to keep all its connections busy), else DEFAULT_BATCH_SIZE. The run's outcome is audited
    under ``actor``."""
    batch_size = batch_size or getattr(backend, "preferred_batch_size", DEFAULT_BATCH_SIZE)
    template = template_for(task)
    progress = RunProgress(total=len(case_ids))
    with database.session_scope() as session:
        run_id = ensure_run(session, ensure_model(session, backend.spec), task, template.version,
                            backend.spec.params(), source=backend.spec.backend).id
        cases = session.scalars(select(Case).join(Frame).where(Case.id.in_(case_ids)).order_by(Case.id)).all()
        cached, todo = split_cached(session, session.get(Run, run_id), cases)
        todo_ids = [c.id for c in todo]
        progress.cached = len(cached)
    if on_progress:
        on_progress(progress)
    for start in range(0, len(todo_ids), batch_size):
        with database.session_scope() as session:
            run = session.get(Run, run_id)
            batch = session.scalars(select(Case).where(Case.id.in_(todo_ids[start:start + batch_size]))
                                    .order_by(Case.id)).all()
            for prediction in predict_batch(session, backend, run, store, batch):
                if prediction.error:
                    progress.failed += 1
                    progress.errors.append((prediction.case.key, prediction.error))
                else:
                    progress.predicted += 1
        if on_progress:
            on_progress(progress)
    with database.session_scope() as session:
        run = session.get(Run, run_id)
        run.status, run.finished_at = ("failed" if progress.failed else "done"), utcnow()
        record(session, "predict.run", actor_label=actor, entity_type="run", entity_id=run_id,
               payload={"model": backend.spec.name, "task": task, "total": progress.total,
                        "cached": progress.cached, "predicted": progress.predicted, "failed": progress.failed})
    return progress

