"""Make the real ``generate()`` emit an exact text: a LogitsProcessor that forces a scripted token sequence.

With random tiny weights the model would babble; forcing its logits lets end-to-end tests drive the parser
and the UI through the real load -> generate -> decode path with outputs known in advance.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList


class ScriptedLogits(LogitsProcessor):
    """Row i of the batch emits ``scripts[i]`` (cycling if the batch is larger), then end-of-sequence."""

    def __init__(self, tokenizer, scripts: list[str]) -> None:  # noqa: ANN001
        self.tokens = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in scripts]
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.prompt_length: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, float("-inf"))
        for row in range(scores.shape[0]):
            script = self.tokens[row % len(self.tokens)]
            forced[row, script[step] if step < len(script) else self.eos] = 0.0
        return forced


def scripted(tokenizer, *scripts: str) -> dict:  # noqa: ANN001
    """Keyword arguments for ``generate`` that force ``scripts`` (one per batch row), with room for them."""
    processor = ScriptedLogits(tokenizer, list(scripts))
    return {"logits_processor": LogitsProcessorList([processor]),
            "max_new_tokens": max(len(t) for t in processor.tokens) + 1}


class ScriptedBackend:
    """Wraps a real backend so every ``generate``/``stream`` call is forced to a script and recorded.

    ``script(request) -> str`` chooses the text for each request (e.g. by its case key or turn).
    """

    def __init__(self, backend, script) -> None:  # noqa: ANN001
        self.inner, self.script, self.spec = backend, script, backend.spec
        self.calls: list[list] = []

    def generate(self, requests):  # noqa: ANN001, ANN201
        self.calls.append(list(requests))
        if not requests:
            return []
        texts = [self.script(r) for r in requests]
        return self.inner.generate(requests, **scripted(self.inner.tokenizer, *texts))

    def stream(self, request):  # noqa: ANN001, ANN201
        return self.inner.stream(request, **scripted(self.inner.tokenizer, self.script(request)))

    def close(self) -> None:
        self.inner.close()
