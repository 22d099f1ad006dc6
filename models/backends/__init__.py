"""Model backends behind one protocol; each module registers itself by name (no chain of ifs)."""

from models.backends.base import (
    Backend,
    BackendError,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    available_backends,
    create_backend,
    register_backend,
)

__all__ = ["Backend", "BackendError", "GenerationRequest", "GenerationResult", "ModelSpec", "available_backends",
           "create_backend", "register_backend"]
