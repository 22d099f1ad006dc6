"""Loaded backends kept for the life of a process, so a model's weights are loaded once and shared.

One pool per process, owned by the app's Services (never a module-level global). Loading is lazy and
thread-safe: two users asking for the same model wait for one load; loading one model never blocks
handing out another. A changed registry entry (same name, other settings) replaces the loaded backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from models.backends.base import Backend, ModelSpec, create_backend


class BackendPool:
    """Backends by model name, created on first use with ``factory`` (default: create_backend)."""

    def __init__(self, factory: Callable[[ModelSpec], Backend] = create_backend) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._loaded: dict[str, tuple[str, Backend]] = {}

    def get(self, spec: ModelSpec) -> Backend:
        """The loaded backend of ``spec``; loads it when absent or when its settings changed.

        Raises BackendError (from the factory) when the model cannot be loaded; nothing is kept then."""
        fingerprint = spec.model_dump_json()
        with self._lock:
            name_lock = self._loading.setdefault(spec.name, threading.Lock())
        with name_lock:
            with self._lock:
                current = self._loaded.get(spec.name)
            if current is not None and current[0] == fingerprint:
                return current[1]
            if current is not None:
                current[1].close()
            backend = self._factory(spec)
            with self._lock:
                self._loaded[spec.name] = (fingerprint, backend)
            return backend

    def loaded(self) -> list[str]:
        """Names of the models loaded now."""
        with self._lock:
            return sorted(self._loaded)

    def close(self) -> None:
        """Close every loaded backend (at process shutdown)."""
        with self._lock:
            backends, self._loaded = list(self._loaded.values()), {}
        for _, backend in backends:
            backend.close()
