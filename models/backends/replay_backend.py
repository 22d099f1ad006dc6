"""The ``replay`` backend: answers recorded in a JSONL file by models run elsewhere.

``spec.path`` names the file; each line is ``{"case": key, "model": name, "task": t, "raw": text, ...}``
(the format of the prediction importer) with optional ``error``, ``latency_ms``, ``prompt_tokens`` and
``completion_tokens``. Only lines for ``spec.name`` count. A request's ``key`` is ``(case, task)``. The file
is read once, on first use; lines that are not such objects are skipped and counted in ``skipped_lines``.
When a case and task appear twice the later line wins (a re-run appended to the file replaces the answer).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backends.base import (
    BackendError,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    register_backend,
)


@dataclass(frozen=True)
class Recorded:
    """One recorded answer."""

    raw: str
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _number(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) and value >= 0 else None


def parse_recorded_line(text: str) -> tuple[str, str, str, Recorded] | None:
    """One JSONL line -> (model, case, task, Recorded), or None when it is not a usable prediction line."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    model, case, task, raw, error = (obj.get(k) for k in ("model", "case", "task", "raw", "error"))
    if not all(isinstance(v, str) and v for v in (model, case, task)):
        return None
    if not (isinstance(raw, str) or (raw is None and isinstance(error, str) and error)):
        return None
    latency = obj.get("latency_ms")
    recorded = Recorded(raw=raw or "", error=error if isinstance(error, str) and error else None,
                        latency_ms=float(latency) if _number(latency, int | float) is not None else None,
                        prompt_tokens=_number(obj.get("prompt_tokens"), int),
                        completion_tokens=_number(obj.get("completion_tokens"), int))
    return model, case, task, recorded


@register_backend("replay")
class ReplayBackend:
    """Looks answers up by (case, task) in the recorded file; nothing is computed."""

    def __init__(self, spec: ModelSpec) -> None:
        """Check that ``spec.path`` is a file; BackendError otherwise. The file is read on first use."""
        if spec.path is None:
            raise BackendError(f"model {spec.name!r}: the replay backend needs path = "
                               f"the predictions JSONL file")
        if not Path(spec.path).is_file():
            raise BackendError(f"model {spec.name!r}: recorded predictions file {spec.path} does not exist")
        self.spec = spec
        self._index: dict[tuple[str, str], Recorded] | None = None
        self._skipped = 0
        self._lock = threading.Lock()

    @property
    def skipped_lines(self) -> int:
        """How many non-blank lines were not usable prediction lines (reads the file if needed)."""
        self._load()
        return self._skipped

    def _load(self) -> dict[tuple[str, str], Recorded]:
        """The (case, task) -> Recorded index of this model, built once; BackendError if unreadable."""
        with self._lock:
            if self._index is None:
                index, skipped = {}, 0
                try:
                    with Path(self.spec.path).open(encoding="utf-8", errors="replace") as handle:
                        for line in handle:
                            if not line.strip():
                                continue
                            parsed = parse_recorded_line(line)
                            if parsed is None:
                                skipped += 1
                            elif parsed[0] == self.spec.name:
                                index[(parsed[1], parsed[2])] = parsed[3]
                except OSError as exc:
                    raise BackendError(f"model {self.spec.name!r}: cannot read "
                                       f"{self.spec.path}: {exc}") from None
                self._index, self._skipped = index, skipped
            return self._index

    def _answer(self, request: GenerationRequest) -> GenerationResult:
        """One request -> the recorded result, or an error naming the case and task that have none."""
        key = request.key
        if not (isinstance(key, tuple | list) and len(key) == 2):
            return GenerationResult(error=f"replay needs the request key (case, task), got {key!r}", key=key)
        case, task = str(key[0]), str(key[1])
        recorded = self._load().get((case, task))
        if recorded is None:
            return GenerationResult(error=f"no recorded output for case {case} task {task}", key=key)
        return GenerationResult(text=recorded.raw, error=recorded.error, latency_ms=recorded.latency_ms,
                                prompt_tokens=recorded.prompt_tokens,
                                completion_tokens=recorded.completion_tokens, key=key)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Requests -> their recorded results, in order; a missing answer or file is an error result."""
        try:
            self._load()
        except BackendError as exc:
            return [GenerationResult(error=str(exc), key=request.key) for request in requests]
        return [self._answer(request) for request in requests]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """The recorded text in one piece; BackendError when there is none."""
        result = self._answer(request)
        if result.error is not None:
            raise BackendError(f"model {self.spec.name!r}: {result.error}")
        yield result.text

    def close(self) -> None:
        """Forget the index (the file is read again on next use)."""
        with self._lock:
            self._index = None
