"""The real transformers path on tiny offline Qwen2.5-VL and Qwen3-VL checkpoints: load, batched generate,
stream, quantized and LoRA loading, and clear errors for broken checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from models.backends import BackendError, GenerationRequest, ModelSpec, create_backend
from models.backends.transformers_backend import SKIP_QUANTIZATION, quantization_config
from tests.scripted import scripted
from tests.tiny_models import build_tiny_qwen

FAMILIES = ["qwen2.5-vl", "qwen3-vl"]
THREE_LEVEL = ('<think> This is a Level 3 task requiring reasoning. Level 1: a grasper retracts the gallbladder. '
               'Level 2: the hook dissects the peritoneum. Level 3: the phase is B. </think> <answer> B </answer>')


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_qwen(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def backends(checkpoints):
    loaded = {family: create_backend(ModelSpec(name=f"tiny-{family}", backend="transformers", path=path,
                                               family=family, generation={"max_new_tokens": 12}))
              for family, path in checkpoints.items()}
    yield loaded
    for backend in loaded.values():
        backend.close()


def _request(size=(854, 480), colour=(180, 60, 60), key=None) -> GenerationRequest:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which phase?"}]}]
    return GenerationRequest(messages, [Image.new("RGB", size, colour)], key=key)


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generation_matches_one_by_one(backends, family):
    backend = backends[family]
    # Different sizes make different prompt lengths: left padding must not change greedy tokens.
    requests = [_request((854, 480)), _request((320, 240), (30, 120, 200)), _request((640, 360), (90, 90, 20))]
    batched = backend.generate(requests)
    single = [backend.generate([r])[0] for r in requests]
    assert [r.error for r in batched] == [None] * 3
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.completion_tokens and r.prompt_tokens and r.latency_ms > 0 for r in batched)


def test_input_size_is_what_the_model_saw(backends):
    """Qwen2.5-VL sees an 854x480 frame as 840x476 (DOMAIN.md section 5); boxes are decoded from it."""
    assert backends["qwen2.5-vl"].generate([_request()])[0].input_size == (840, 476)
    width, height = backends["qwen3-vl"].generate([_request()])[0].input_size
    assert width % 32 == 0 and height % 32 == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_a_scripted_output_comes_back_exactly_through_generate(backends, family):
    backend = backends[family]
    result = backend.generate([_request()], **scripted(backend.tokenizer, THREE_LEVEL))[0]
    assert result.text.strip() == THREE_LEVEL


def test_batches_carry_a_different_script_per_row(backends):
    backend = backends["qwen3-vl"]
    results = backend.generate([_request(key=1), _request(key=2)],
                               **scripted(backend.tokenizer, "<answer> A </answer>", "<answer> D </answer>"))
    assert [(r.key, r.text.strip()) for r in results] == [(1, "<answer> A </answer>"), (2, "<answer> D </answer>")]


@pytest.mark.parametrize("family", FAMILIES)
def test_streaming_yields_pieces_that_join_to_the_output(backends, family):
    backend = backends[family]
    pieces = list(backend.stream(_request(), **scripted(backend.tokenizer, THREE_LEVEL)))
    assert len(pieces) > 5
    assert "".join(pieces).strip() == THREE_LEVEL


def test_an_image_the_processor_rejects_is_an_error_result_not_an_exception(backends):
    tiny = GenerationRequest(_request().messages, [Image.new("RGB", (1, 400))])  # aspect ratio > 200
    result = backends["qwen2.5-vl"].generate([tiny])[0]
    assert result.text == "" and "generation failed" in result.error


def test_mismatched_image_parts_are_an_error_result(backends):
    no_image = GenerationRequest(_request().messages, [])
    assert backends["qwen2.5-vl"].generate([no_image])[0].error


def test_the_processor_falls_back_to_image_only_when_torchvision_is_missing(backends):
    processor = backends["qwen2.5-vl"].processor
    assert processor.image_processor is not None and processor.video_processor is None
    assert type(processor).__mro__[1].__name__ == "Qwen2_5_VLProcessor"


def test_an_unknown_processor_class_does_not_silently_drop_images(checkpoints, tmp_path):
    """AutoProcessor returns a bare tokenizer for an unknown processor_class; the backend must not."""
    folder = shutil.copytree(checkpoints["qwen3-vl"], tmp_path / "custom")
    config = (folder / "processor_config.json").read_text()
    (folder / "processor_config.json").write_text(config.replace('"Qwen3VLProcessor"', '"MyLabProcessor"'))
    backend = create_backend(ModelSpec(name="custom", backend="transformers", path=folder,
                                       generation={"max_new_tokens": 4}))
    result = backend.generate([_request()])[0]
    assert result.error is None and result.prompt_tokens > 100  # the image tokens are in the prompt


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "config.json is missing"),
])
def test_unreadable_checkpoints_are_clear_errors(tmp_path, make, message):
    with pytest.raises(BackendError, match=message):
        create_backend(ModelSpec(name="broken", backend="transformers", path=make(tmp_path)))


def test_corrupt_weights_are_a_clear_error(checkpoints, tmp_path):
    folder = shutil.copytree(checkpoints["qwen2.5-vl"], tmp_path / "corrupt")
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(BackendError, match="cannot load the model"):
        create_backend(ModelSpec(name="corrupt", backend="transformers", path=folder))


def test_a_missing_processor_is_a_clear_error(checkpoints, tmp_path):
    folder = shutil.copytree(checkpoints["qwen2.5-vl"], tmp_path / "noproc")
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(BackendError):
        create_backend(ModelSpec(name="noproc", backend="transformers", path=folder))


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(BackendError, match="known: openai, replay, transformers"):
        create_backend(ModelSpec(name="x", backend="tgi"))


def test_bitsandbytes_configs_keep_vision_and_head_unquantized():
    four = quantization_config("4bit")
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4"
    assert four.llm_int8_skip_modules == SKIP_QUANTIZATION == ["model.visual", "lm_head"]
    eight = quantization_config("8bit")
    assert eight.load_in_8bit and eight.llm_int8_skip_modules == SKIP_QUANTIZATION
    assert quantization_config("none") is None


@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_quantized_loading_on_cpu_generates(checkpoints, quantization):
    backend = create_backend(ModelSpec(name="q", backend="transformers", path=checkpoints["qwen2.5-vl"],
                                       quantization=quantization, generation={"max_new_tokens": 4}))
    linear_types = {type(m).__name__ for m in backend.model.model.language_model.modules()}
    assert {"Linear8bitLt", "Linear4bit"} & linear_types
    assert type(backend.model.lm_head).__name__ == "Linear"  # kept out of quantization
    assert all(type(m).__name__ not in {"Linear8bitLt", "Linear4bit"} for m in backend.model.model.visual.modules())
    result = backend.generate([_request()], **scripted(backend.tokenizer, "<answer> C </answer>"))[0]
    assert result.error is None and result.text.strip() == "<answer> C </answer>"


def test_a_lora_adapter_changes_the_model(checkpoints, tmp_path, backends):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(checkpoints["qwen2.5-vl"])
    torch.manual_seed(1)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    spec = ModelSpec(name="lora", backend="transformers", path=checkpoints["qwen2.5-vl"],
                     adapter=tmp_path / "adapter", generation={"max_new_tokens": 12})
    adapted = create_backend(spec)
    assert type(adapted.model).__name__.startswith("Peft")
    assert adapted.generate([_request()])[0].text != backends["qwen2.5-vl"].generate([_request()])[0].text


def test_a_missing_adapter_folder_is_a_clear_error(checkpoints, tmp_path):
    with pytest.raises(BackendError, match="adapter folder"):
        create_backend(ModelSpec(name="x", backend="transformers", path=checkpoints["qwen2.5-vl"],
                                 adapter=tmp_path / "nope"))
