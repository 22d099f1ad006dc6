"""Running the models of a comparison that the cache could not serve, one after another.

Backends that generate text incrementally stream it into the model's view as it comes; the finished text is
stored through the runner (``store_result``), so the next comparison of the same frame is served from the
cache. Other backends are run through ``predict_batch``. Each step yields a new CaseComparison snapshot; no
database session is held while a model generates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from db.audit import record
from db.engine import Database
from db.frames import FrameStore
from db.schema import Case, Run
from models.backends.base import Backend, BackendError, GenerationRequest, GenerationResult, ModelSpec
from models.compare import CaseComparison, ModelView, prepare_comparison, view_of
from models.parsing import parse_output
from models.prompts import TURN_SEPARATOR, PromptContext, PromptTemplate, template_for
from models.runner import predict_batch, store_result

# Backends whose ``stream`` yields text as it is generated (replay would hand over the whole text at once).
STREAMING_BACKENDS = frozenset({"transformers", "openai"})
# Streamed text is passed on at most this often: each snapshot re-renders the panel in the browser.
STREAM_INTERVAL_S = 0.1


def first_request(comparison: CaseComparison, template: PromptTemplate) -> GenerationRequest:
    """The first-turn request of ``template`` for the compared case (its frame, its vocabulary)."""
    messages = template.first_turn(PromptContext(vocabulary=comparison.vocabulary))
    return GenerationRequest(messages, [comparison.image], key=(comparison.case_key, template.task))


def stream_text(backend: Backend, comparison: CaseComparison) -> Iterator[str]:
    """The output text so far, growing piece by piece; two-turn tasks give turn 1, the separator, turn 2
    (the runner's stored form). Raises BackendError when the backend fails."""
    template = template_for(comparison.task)
    request = first_request(comparison, template)
    text = ""
    for piece in backend.stream(request):
        text += piece
        yield text
    if template.turns == 1:
        return
    convention = backend.spec.box_convention
    phase = parse_output(text, task="phase", box_convention=convention, width=comparison.width,
                         height=comparison.height, vocabulary=comparison.vocabulary).phase
    messages = template.second_turn(request.messages, text, phase, PromptContext(comparison.vocabulary))
    prefix, second = f"{text}\n{TURN_SEPARATOR}\n", ""
    yield prefix
    for piece in backend.stream(GenerationRequest(messages, request.images, key=request.key)):
        second += piece
        yield prefix + second


def _stored_view(database: Database, spec: ModelSpec, comparison: CaseComparison, view: ModelView,
                 result: GenerationResult) -> ModelView:
    with database.session_scope() as session:
        run, case = session.get(Run, view.run_id), session.get(Case, comparison.case_id)
        prediction = store_result(session, run, case, result)
        record(session, "predict.compare", actor_label="compare", entity_type="prediction",
               entity_id=prediction.id, payload={"model": spec.name, "case": case.key, "task": run.task,
                                                 "error": prediction.error})
        return view_of(prediction, spec, comparison, "predicted")


def _streamed(database: Database, backend: Backend, comparison: CaseComparison,
              view: ModelView) -> Iterator[ModelView]:
    started = last = time.perf_counter()
    text, error = "", None
    try:
        for text in stream_text(backend, comparison):
            if time.perf_counter() - last >= STREAM_INTERVAL_S:
                last = time.perf_counter()
                yield replace(view, status="streaming", partial=text)
    except BackendError as exc:
        error = str(exc)
    latency = (time.perf_counter() - started) * 1000
    result = GenerationResult(text=text, error=error, latency_ms=latency, key=(comparison.case_key,
                                                                                  comparison.task))
    yield _stored_view(database, backend.spec, comparison, view, result)


def predict_view(database: Database, store: FrameStore, backend: Backend, comparison: CaseComparison,
                 model: str) -> Iterator[ModelView]:
    """Run ``model`` on the compared case: streaming snapshots (when its backend streams), then the stored
    result as a "predicted" (or "error") view."""
    view = comparison.view(model)
    if backend.spec.backend in STREAMING_BACKENDS:
        yield from _streamed(database, backend, comparison, view)
        return
    with database.session_scope() as session:
        case = session.get(Case, comparison.case_id)
        prediction, = predict_batch(session, backend, session.get(Run, view.run_id), store, [case])
        yield view_of(prediction, backend.spec, comparison, "predicted")


def compare_live(database: Database, store: FrameStore, get_backend: Callable[[ModelSpec], Backend],
                 case_id: int, specs: Sequence[ModelSpec], task: str) -> Iterator[CaseComparison]:
    """Snapshots of the comparison: first every cached answer at once, then each remaining model as it runs.

    ``get_backend`` hands out loaded backends (the process's pool); a model that cannot be loaded shows its
    error and the others go on. Raises CompareError before the first snapshot when nothing can be compared."""
    with database.session_scope() as session:
        comparison = prepare_comparison(session, store, case_id, specs, task)
    yield comparison
    by_name = {spec.name: spec for spec in specs}
    for model in comparison.pending:
        comparison = comparison.with_view(replace(comparison.view(model), status="loading"))
        yield comparison
        try:
            backend = get_backend(by_name[model])
        except BackendError as exc:
            comparison = comparison.with_view(replace(comparison.view(model), status="error",
                                                      error=f"cannot load the model: {exc}"))
            yield comparison
            continue
        for view in predict_view(database, store, backend, comparison, model):
            comparison = comparison.with_view(view)
            yield comparison
