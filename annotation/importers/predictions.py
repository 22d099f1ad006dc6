"""Import model outputs run elsewhere: a JSONL file, one line per case and model, into runs and predictions.

Models named in the file are registered with the ``replay`` backend when new. Lines with the same model,
task, prompt version and parameters share one run. ``parsed`` stays empty: the parser fills it later.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation.importers.common import ImportRejected, ImportSummary, item_scope
from db import audit
from db.schema import TASKS, Case, Model, Prediction, Run, utcnow
from db.text import storable
from models.boxes import CONVENTIONS

MAX_LINE_BYTES = 2 * 1024 * 1024
MODEL_CONFIG_KEYS = ("family", "box_convention", "color")
# Optional string fields and the longest value their columns hold.
_OPTIONAL_TEXT = {"prompt_version": 50, "family": 30, "box_convention": 30, "color": 20, "error": None}
_MODEL_NAME = re.compile(r"[A-Za-z0-9._-]+")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_KNOWN_KEYS = {"case", "model", "raw", "task", "params", "latency_ms", "prompt_tokens", "completion_tokens",
               *_OPTIONAL_TEXT}


@dataclass(frozen=True)
class PredictionLine:
    """One checked line of a prediction file."""

    case: str
    model: str
    task: str
    raw: str | None
    prompt_version: str = "imported"
    params: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    model_config: dict[str, str] = field(default_factory=dict)
    ignored_keys: tuple[str, ...] = ()

    @property
    def params_sha256(self) -> str:
        return params_sha256(self.params)


def params_sha256(params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``params`` (sorted keys, no spaces); NaN is rejected."""
    try:
        canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                               allow_nan=False)
        unstorable = _unstorable(params)
    except RecursionError as exc:
        raise ImportRejected("params are nested too deeply to store") from exc
    except ValueError as exc:
        raise ImportRejected("params hold NaN or Infinity, which cannot be stored") from exc
    if unstorable:
        raise ImportRejected("params hold a NUL byte or a lone surrogate, which cannot be stored")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _unstorable(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) holds NUL or a lone surrogate."""
    if isinstance(value, str):
        return storable(value) != value
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    return False


def read_lines(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for every non-blank line; None stands for a line over MAX_LINE_BYTES."""
    with path.open("rb") as handle:
        lineno = 0
        while chunk := handle.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(chunk) > MAX_LINE_BYTES:
                while chunk and not chunk.endswith(b"\n"):  # skip the rest of the over-long line
                    chunk = handle.readline(MAX_LINE_BYTES)
                yield lineno, None
            elif chunk.strip():
                yield lineno, chunk


def _text(obj: dict[str, Any], key: str, *, required: bool, limit: int | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ImportRejected(f"missing {key!r}")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise ImportRejected(f"{key!r} must be a non-empty string, got {value!r:.80}")
    if limit is not None and len(value) > limit:
        raise ImportRejected(f"{key!r} is {len(value)} characters; the limit is {limit}")
    if key != "error" and storable(value) != value:  # a key or name; the error text is stored cleaned
        raise ImportRejected(f"{key!r} holds a NUL byte or a lone surrogate, which cannot be stored")
    return value


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ImportRejected(f"{key!r} must be a whole number >= 0, got {value!r:.80}")
    return value


def _latency(obj: dict[str, Any]) -> float | None:
    value = obj.get("latency_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ImportRejected(f"'latency_ms' must be a finite number >= 0, got {value!r:.80}")
    return float(value)


def parse_line(text: str, *, task: str | None, model_defaults: dict[str, str]) -> PredictionLine:
    """One JSONL line -> PredictionLine; ImportRejected names the first thing wrong."""
    try:
        obj = json.loads(text)
    except RecursionError as exc:
        raise ImportRejected("not usable JSON: it is nested too deeply") from exc
    except ValueError as exc:
        raise ImportRejected(f"not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ImportRejected(f"a line must be a JSON object, got {type(obj).__name__}")
    line_task = _text(obj, "task", required=False) or task
    if line_task is None:
        raise ImportRejected("missing 'task' (give it on the line or as the import's default task)")
    if line_task not in TASKS:
        raise ImportRejected(f"unknown task {line_task!r}; known: {', '.join(TASKS)}")
    raw = obj.get("raw")
    if "raw" not in obj:
        raise ImportRejected("missing 'raw' (the model's text)")
    if not (isinstance(raw, str) or (raw is None and obj.get("error"))):
        raise ImportRejected(f"'raw' must be a string (null only beside an error), got {raw!r:.80}")
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise ImportRejected(f"'params' must be an object, got {type(params).__name__}")
    texts = {key: _text(obj, key, required=False, limit=limit) for key, limit in _OPTIONAL_TEXT.items()}
    config = {k: v for k in MODEL_CONFIG_KEYS if (v := texts[k] or model_defaults.get(k)) is not None}
    if config.get("box_convention") not in (None, *CONVENTIONS):
        raise ImportRejected(f"unknown box_convention {config['box_convention']!r}; "
                             f"known: {', '.join(CONVENTIONS)}")
    model = _text(obj, "model", required=True, limit=100)
    if not _MODEL_NAME.fullmatch(model):  # the registry's rule: the name appears in pages and file names
        raise ImportRejected(f"'model' {model[:80]!r} may hold only letters, digits, '.', '_' and '-'")
    if config.get("color") is not None and not _COLOR.fullmatch(config["color"]):
        raise ImportRejected(f"'color' must be #rrggbb, got {config['color']!r}")
    return PredictionLine(
        case=_text(obj, "case", required=True, limit=400),
        model=model,
        task=line_task, raw=raw, prompt_version=texts["prompt_version"] or "imported", params=params,
        latency_ms=_latency(obj), prompt_tokens=_count(obj, "prompt_tokens"),
        completion_tokens=_count(obj, "completion_tokens"), error=texts["error"], model_config=config,
        ignored_keys=tuple(sorted(set(obj) - _KNOWN_KEYS)))


def get_or_create_model(session: Session, line: PredictionLine, path: Path) -> tuple[Model, list[str]]:
    """The model named on ``line``, registered as a replay model when new. Returns (model, warnings)."""
    model = session.scalar(select(Model).where(Model.name == line.model))
    if model is None:
        model = Model(name=line.model, backend="replay", location=str(path), settings={}, **line.model_config)
        session.add(model)
        session.flush()
        return model, []
    # An existing model keeps its configuration; say so when the file disagrees with it.
    differing = [k for k, v in line.model_config.items() if getattr(model, k) not in (None, v)]
    return model, [f"model {model.name!r} keeps its {k} {getattr(model, k)!r}; the file says "
                   f"{line.model_config[k]!r}" for k in differing]


def get_or_create_run(session: Session, model: Model, line: PredictionLine, path: Path) -> Run:
    """The run of (model, task, prompt version, params hash), created with status "imported" when new."""
    digest = line.params_sha256
    run = session.scalar(select(Run).where(Run.model_id == model.id, Run.task == line.task,
                                           Run.prompt_version == line.prompt_version,
                                           Run.params_sha256 == digest))
    if run is None:
        run = Run(model_id=model.id, task=line.task, prompt_version=line.prompt_version, params=line.params,
                  params_sha256=digest, status="imported", source=str(path), finished_at=utcnow())
        session.add(run)
        session.flush()
    return run


def _import_line(session: Session, data: bytes | None, path: Path, *, task: str | None,
                 model_defaults: dict[str, str]) -> tuple[bool, list[str]]:
    """One line -> (created, warnings); False means the run already holds a prediction for the case."""
    if data is None:
        raise ImportRejected(f"the line is longer than {MAX_LINE_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"the line is not UTF-8 text ({exc})") from exc
    line = parse_line(text, task=task, model_defaults=model_defaults)
    case = session.scalar(select(Case).where(Case.key == line.case))
    if case is None:
        raise ImportRejected(f"no case with key {line.case!r}; import its frame first")
    model, warnings = get_or_create_model(session, line, path)
    run = get_or_create_run(session, model, line, path)
    existing = select(Prediction.id).where(Prediction.run_id == run.id, Prediction.case_id == case.id)
    if session.scalar(existing) is not None:
        return False, warnings
    session.add(Prediction(run_id=run.id, case_id=case.id, raw_text=storable(line.raw), error=storable(line.error),
                           latency_ms=line.latency_ms, prompt_tokens=line.prompt_tokens,
                           completion_tokens=line.completion_tokens))
    session.flush()
    if line.ignored_keys:
        warnings.append(f"ignored unknown key(s) {', '.join(line.ignored_keys)}")
    return True, warnings


def import_predictions(session: Session, path: Path, *, task: str | None = None,
                       model_defaults: dict[str, str] | None = None, actor: str = "system") -> ImportSummary:
    """Import the prediction JSONL at ``path``; ``task`` is the default for lines without one and
    ``model_defaults`` (family, box_convention, color) configure models the file registers.

    Returns the summary with one item per non-blank line, named ``<file name>:<line number>``.
    """
    path = Path(path)
    defaults = dict(model_defaults or {})
    if unknown := set(defaults) - set(MODEL_CONFIG_KEYS):
        raise ValueError(f"model_defaults accepts {', '.join(MODEL_CONFIG_KEYS)}, "
                         f"not {', '.join(sorted(unknown))}")
    summary = ImportSummary("predictions")
    try:
        for lineno, data in read_lines(path):
            item = f"{path.name}:{lineno}"
            # item_scope needs a frame store only to drop frame files; prediction lines write none.
            with item_scope(session, None, summary, item):  # type: ignore[arg-type]
                created, warnings = _import_line(session, data, path, task=task, model_defaults=defaults)
                (summary.imported if created else summary.duplicates).append(item)
                summary.warnings += [(item, message) for message in warnings]
    except OSError as exc:
        summary.rejected.append((path.name, f"cannot read the file ({exc})"))
    audit.record(session, "import.predictions", actor_label=actor,
                 payload={"path": str(path), "task": task, **summary.counts})
    return summary
