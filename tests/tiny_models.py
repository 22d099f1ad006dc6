"""Tiny random Qwen2.5-VL and Qwen3-VL checkpoints built offline, for tests and benchmarks.

A byte-level BPE is trained with ``tokenizers`` on a few sentences, renumbered 0..N-1 (so the Qwen special
tokens appended after it get ids of their own), wrapped as a Qwen2Tokenizer, and saved with the PIL image
processor and a tiny config: about 0.2 M parameters, 1 MB on disk. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# Reasoning tags stay normal tokens so they survive skip_special_tokens=True.
REASONING_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

CORPUS = [
    "This is a Level 3 task requiring perceptual grounding, relational understanding and contextual reasoning.",
    "Level 1: a grasper retracts the gallbladder fundus; a hook sits over Calot's triangle near the cystic duct.",
    "Level 2: the hook dissects the peritoneum; the grasper retracts the gallbladder to expose the triangle.",
    "Level 3: the phase is Dissection of Calot's Triangle because the cystic artery is not yet clipped.",
    "Location: inside the hepatocystic triangle above the cystic duct. Exposure: adequate.",
    "Next action: continue blunt dissection. Critical risk: common bile duct injury. Go zone bbox_2d label",
    "phase A B C D yes no grasper hook clipper scissors bipolar irrigator liver cystic artery plate",
    '[{"bbox_2d": [120, 80, 420, 300], "label": "go zone"}] (12,34),(56,78) 0123456789',
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer():  # noqa: ANN201 - transformers types are imported lazily
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(CORPUS, trainer)
    state = json.loads(bpe.to_str())["model"]
    # Renumber 0..N-1: trained ids have gaps, and a special token must never share an id with a word.
    vocab = {token: i for i, (token, _) in enumerate(sorted(state["vocab"].items(), key=lambda kv: kv[1]))}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS})
    tokenizer.add_tokens(REASONING_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def _text_config(tokenizer) -> dict:  # noqa: ANN001
    return {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"), "bos_token_id": None,
            "tie_word_embeddings": False}


def build_tiny_qwen(folder: Path, family: str = "qwen2.5-vl", seed: int = 0) -> Path:
    """Write a tiny random checkpoint of ``family`` (qwen2.5-vl or qwen3-vl) to ``folder``; return it."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorPil,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(name)
           for name in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")}
    text = _text_config(tokenizer)
    if family == "qwen2.5-vl":
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                  "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                  "fullatt_block_indexes": [1]}
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                                  video_token_id=ids["<|video_pad|>"],
                                  vision_start_token_id=ids["<|vision_start|>"],
                                  vision_end_token_id=ids["<|vision_end|>"])
        model = Qwen2_5_VLForConditionalGeneration(config)
        image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                                   min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
        processor_cls = Qwen2_5_VLProcessor
    elif family == "qwen3-vl":
        text["rope_parameters"]["mrope_interleaved"] = True
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                  "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                  "num_position_embeddings": 64, "deepstack_visual_indexes": [1]}
        config = Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                               video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                               vision_end_token_id=ids["<|vision_end|>"])
        model = Qwen3VLForConditionalGeneration(config)
        image_processor = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                                                   image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                                   min_pixels=64 * 64, max_pixels=32 * 32 * 1280)
        processor_cls = Qwen3VLProcessor
    else:
        raise ValueError(f"unknown family {family!r}")
    model.generation_config.eos_token_id = text["eos_token_id"]
    model.generation_config.pad_token_id = text["pad_token_id"]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    processor = _processor_without_video(processor_cls, image_processor, tokenizer)
    processor.save_pretrained(folder)
    return folder


def _processor_without_video(processor_cls, image_processor, tokenizer):  # noqa: ANN001, ANN202
    """Qwen processors want a video processor, which needs torchvision; images need none."""

    class ImageOnly(processor_cls):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: ANN001
            self.video_processor = None
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                             chat_template=chat_template, **kwargs)

    # Saved under the real class name, as a real checkpoint is: AutoProcessor then needs torchvision here.
    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_cls.__name__
    return ImageOnly(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
