"""Local checkpoints through transformers: Qwen2.5-VL, Qwen3-VL and any image-text-to-text model with a
chat template. Batched generation with left padding, token streaming, bf16/fp16/fp32, bitsandbytes 4/8-bit
with the vision tower and lm_head kept unquantized, an optional LoRA adapter (peft). Nothing is downloaded:
the path must be a local folder.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    BitsAndBytesConfig,
    TextIteratorStreamer,
)

from models.backends.base import BackendError, GenerationRequest, GenerationResult, ModelSpec, register_backend

log = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": "auto"}
# Modules never quantized: the vision tower (narrower than a 4-bit block in small models, and sensitive)
# and the output head. "visual" alone does not match the module path in transformers 5.
SKIP_QUANTIZATION = ["model.visual", "lm_head"]


def quantization_config(quantization: str) -> BitsAndBytesConfig | None:
    """The bitsandbytes configuration for "4bit" (nf4, double quantization) or "8bit"; None for "none"."""
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16,
                                  llm_int8_skip_modules=SKIP_QUANTIZATION)
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP_QUANTIZATION)
    return None


def _check_folder(path: Path | None, what: str) -> Path:
    if path is None:
        raise BackendError(f"the transformers backend needs a local {what} folder (set `path`)")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise BackendError(f"{what} folder {str(path)!r} does not exist or is not a folder")
    if what == "checkpoint" and not (path / "config.json").is_file():
        raise BackendError(f"{str(path)!r} is not a transformers checkpoint: config.json is missing")
    return path


def load_processor(path: Path) -> Any:
    """The model's processor. Falls back to an image-only processor when AutoProcessor cannot build one
    (Qwen-VL processors want a video processor, which needs torchvision) or returns a bare tokenizer."""
    try:
        processor = AutoProcessor.from_pretrained(path)
    except ImportError as exc:
        log.info("AutoProcessor failed for %s (%s); building an image-only processor", path, exc)
        return _image_only_processor(path)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load the processor of {str(path)!r}: {exc}") from exc
    if getattr(processor, "image_processor", None) is None:
        log.info("AutoProcessor returned %s for %s; building an image-only processor", type(processor).__name__,
                 path)
        return _image_only_processor(path)
    return processor


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _image_only_processor(path: Path) -> Any:
    """The processor class the checkpoint names, built from its tokenizer and PIL image processor only."""
    config = _read_json(path / "processor_config.json")
    image_config = config.get("image_processor") or _read_json(path / "preprocessor_config.json")
    processor_name = config.get("processor_class") or image_config.get("processor_class")
    image_name = image_config.get("image_processor_type", "")
    processor_cls = getattr(transformers, processor_name or "", None)
    if processor_cls is None:  # a custom class name: use the processor transformers maps the model type to
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        model_type = _read_json(path / "config.json").get("model_type", "")
        processor_name = PROCESSOR_MAPPING_NAMES.get(model_type) or processor_name
        processor_cls = getattr(transformers, processor_name or "", None)
    image_cls = (getattr(transformers, f"{image_name.removesuffix('Fast')}Pil", None)
                 or getattr(transformers, image_name.removesuffix("Fast"), None))
    if processor_cls is None or image_cls is None:
        raise BackendError(f"{str(path)!r} has no usable processor: processor_class={processor_name!r}, "
                           f"image_processor_type={image_name!r}")
    try:
        image_processor = image_cls(**{k: v for k, v in image_config.items()
                                       if k not in {"image_processor_type", "processor_class"}})
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise BackendError(f"cannot build the processor of {str(path)!r}: {exc}") from exc

    class ImageOnlyProcessor(processor_cls):  # type: ignore[misc, valid-type]
        def __init__(self, image_processor, tokenizer, chat_template=None):  # noqa: ANN001
            self.video_processor = None
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                             chat_template=chat_template)

    return ImageOnlyProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)


@register_backend("transformers")
class TransformersBackend:
    """A local image-text-to-text checkpoint."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        path = _check_folder(spec.path, "checkpoint")
        self.processor = load_processor(path)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.chat_template is None and getattr(self.processor, "chat_template", None) is None:
            raise BackendError(f"{str(path)!r} has no chat template; cannot build prompts")
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(
                path, dtype=DTYPES[spec.dtype], quantization_config=quantization_config(spec.quantization))
        except Exception as exc:  # noqa: BLE001 - safetensors, torch and config errors share no base class
            raise BackendError(f"cannot load the model in {str(path)!r}: {exc.__class__.__name__}: {exc}") from exc
        if spec.adapter is not None:
            self.model = self._with_adapter(_check_folder(spec.adapter, "adapter"))
        self.model.eval()

    def _with_adapter(self, adapter: Path) -> Any:
        from peft import PeftModel

        try:
            return PeftModel.from_pretrained(self.model, adapter)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise BackendError(f"cannot load the LoRA adapter in {str(adapter)!r}: {exc}") from exc

    # -- inputs ------------------------------------------------------------------------------------

    def _inputs(self, requests: Sequence[GenerationRequest]) -> Any:
        texts = [self.processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
                 for r in requests]
        images = [image.convert("RGB") for r in requests for image in r.images]
        return self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")

    def _input_sizes(self, inputs: Any, requests: Sequence[GenerationRequest]) -> list[tuple[int, int] | None]:
        """(width, height) of each request's first image as the model saw it, from ``image_grid_thw``."""
        grid = inputs.get("image_grid_thw")
        patch = getattr(self.processor.image_processor, "patch_size", None)
        sizes: list[tuple[int, int] | None] = []
        index = 0
        for request in requests:
            if grid is None or patch is None or not request.images:
                sizes.append(None)
            else:
                _, h, w = (int(v) for v in grid[index])
                sizes.append((w * patch, h * patch))
            index += len(request.images)
        return sizes

    def _generate_kwargs(self) -> dict[str, Any]:
        settings = self.spec.generation
        kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    # -- protocol ----------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], **extra: Any) -> list[GenerationResult]:
        """One batched ``generate`` over ``requests``; a failure becomes an error on every result."""
        if not requests:
            return []
        started = time.perf_counter()
        try:
            inputs = self._inputs(requests)
            with torch.inference_mode():
                output = self.model.generate(**inputs, **{**self._generate_kwargs(), **extra})
        except (ValueError, RuntimeError, TypeError, IndexError, OSError) as exc:
            message = f"{self.spec.name}: generation failed: {exc.__class__.__name__}: {exc}"
            return [GenerationResult(error=message, key=r.key) for r in requests]
        latency = (time.perf_counter() - started) * 1000 / len(requests)
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[:, prompt_length:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        pad = self.tokenizer.pad_token_id
        return [GenerationResult(text=text, latency_ms=latency, prompt_tokens=int(prompt_counts[i]),
                                 completion_tokens=int((new_tokens[i] != pad).sum()), input_size=size,
                                 key=requests[i].key)
                for i, (text, size) in enumerate(zip(texts, self._input_sizes(inputs, requests), strict=True))]

    def stream(self, request: GenerationRequest, **extra: Any) -> Iterator[str]:
        """Text pieces as ``generate`` produces them (generation runs in a worker thread)."""
        try:
            inputs = self._inputs([request])
        except (ValueError, RuntimeError, TypeError, IndexError, OSError) as exc:
            raise BackendError(f"{self.spec.name}: cannot prepare the input: {exc}") from exc
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=self.spec.timeout_s)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**inputs, **{**self._generate_kwargs(), **extra}, streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name=f"generate-{self.spec.name}", daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()
        if failure:
            raise BackendError(f"{self.spec.name}: generation failed: {failure[0]}") from failure[0]

    def close(self) -> None:
        self.model = None  # free the weights; the garbage collector does the rest
