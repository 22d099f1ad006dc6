"""The backend protocol, the model specification and the registry of backends by name.

Messages use the conversational format TRL and OpenAI share: ``{"role": "user", "content": [{"type": "image"},
{"type": "text", "text": "..."}]}``. Image parts carry no data; the request's ``images`` hold the PIL images
in the order their parts appear.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field


class BackendError(RuntimeError):
    """A model cannot be loaded or called; the message says what to fix."""


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(1024, gt=0, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class ModelSpec(BaseModel):
    """One model of the registry file (TOML ``[[models]]``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    backend: str
    family: Literal["qwen2.5-vl", "qwen3-vl", "qwen2-vl", "other"] = "other"
    box_convention: Literal["qwen25_pixels", "rel1000", "pixels"] = "pixels"
    color: str = Field("#7f7f7f", pattern=r"^#[0-9a-fA-F]{6}$")
    description: str = ""
    # transformers: a local checkpoint folder, an optional LoRA adapter folder, dtype and quantization.
    path: Path | None = None
    adapter: Path | None = None
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    quantization: Literal["none", "4bit", "8bit"] = "none"
    # openai: the server, the remote model name, the key's environment variable, limits.
    url: str | None = None
    remote_model: str | None = None
    api_key_env: str | None = None
    concurrency: int = Field(4, ge=1, le=512)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    # Server-specific request fields, e.g. vLLM's {"chat_template_kwargs": {"enable_thinking": true}}.
    extra_body: dict[str, Any] = Field(default_factory=dict)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)

    def params(self) -> dict[str, Any]:
        """What changes a model's output for the same prompt: part of the prediction cache key."""
        return {"generation": self.generation.model_dump(), "adapter": str(self.adapter) if self.adapter else None,
                "quantization": self.quantization, "dtype": self.dtype, "remote_model": self.remote_model,
                "extra_body": self.extra_body}


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)
    # Passed through to the result. The runner sets (case key, task), which the replay backend looks up.
    key: Any = None


@dataclass
class GenerationResult:
    text: str = ""
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # (width, height) of the image as the model saw it, for Qwen2.5-VL pixel boxes.
    input_size: tuple[int, int] | None = None
    key: Any = None


@runtime_checkable
class Backend(Protocol):
    spec: ModelSpec

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; a failure is a result with ``error`` set, never an exception."""

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text pieces as they are generated; raises BackendError on failure."""

    def close(self) -> None: ...


BackendFactory = Callable[[ModelSpec], Backend]
_BACKENDS: dict[str, BackendFactory] = {}
# Modules that register built-in backends when first needed (importing torch costs seconds).
_BUILTIN = {"transformers": "models.backends.transformers_backend", "openai": "models.backends.openai_backend",
            "replay": "models.backends.replay_backend"}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def decorate(factory: BackendFactory) -> BackendFactory:
        _BACKENDS[name] = factory
        return factory

    return decorate


def available_backends() -> list[str]:
    return sorted(set(_BACKENDS) | set(_BUILTIN))


def create_backend(spec: ModelSpec) -> Backend:
    """Build the backend ``spec.backend`` names; BackendError when it is unknown or cannot load."""
    if spec.backend not in _BACKENDS and spec.backend in _BUILTIN:
        importlib.import_module(_BUILTIN[spec.backend])
    factory = _BACKENDS.get(spec.backend)
    if factory is None:
        raise BackendError(f"model {spec.name!r}: unknown backend {spec.backend!r}; "
                           f"known: {', '.join(available_backends())}")
    return factory(spec)
