"""Model-layer speed, measured in one run on a tiny offline Qwen2.5-VL (no GPU, no downloads).

    python -m bench.models [--cases 16] [--tokens 128]

Reports: batched vs sequential generation throughput at batch 4 and 8 (goal: >= 2x at batch 4), and the time
to serve a cached prediction vs the time of a model call through the runner. The parser's throughput is
measured by bench/parser.py.

Batching pays off in the decode steps; the prefill of an 854x480 frame (about 530 prompt tokens and the
vision tower) costs the same per image batched or not. 128 new tokens is still short of a real three-level
output (200-500 tokens); at 32 tokens the prefill dominates and batching gains less.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from annotation.importers import CaseMeta, import_frames
from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from models.backends import GenerationRequest, ModelSpec, create_backend
from models.runner import run_predictions
from tests.conftest import make_image_bytes
from tests.tiny_models import build_tiny_qwen

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which phase is shown?"}]}]


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(MESSAGES, [Image.new("RGB", (854, 480), (120 + i, 60, 60))]) for i in range(n)]


def generation(backend, cases: int, tokens: int) -> None:  # noqa: ANN001
    requests = _requests(cases)
    fixed = {"min_new_tokens": tokens}  # every output the same length, whatever the random weights say
    backend.generate(requests[:2], **fixed)  # warm up
    started = time.perf_counter()
    for request in requests:
        backend.generate([request], **fixed)
    sequential = cases / (time.perf_counter() - started)
    print(f"sequential:      {sequential:7.1f} outputs/s")
    for batch in (4, 8):
        started = time.perf_counter()
        for i in range(0, cases, batch):
            backend.generate(requests[i:i + batch], **fixed)
        rate = cases / (time.perf_counter() - started)
        goal = "  (goal >= 2x)" if batch == 4 else ""
        print(f"batch {batch}:         {rate:7.1f} outputs/s  = {rate / sequential:.2f}x sequential{goal}")


def cache(backend, folder: Path, cases: int) -> None:  # noqa: ANN001
    database = Database.from_url(f"sqlite:///{folder / 'bench.db'}")
    upgrade(database.engine)
    store = FrameStore(folder / "frames")
    images = folder / "in" / "video01"
    images.mkdir(parents=True)
    for i in range(cases):
        (images / f"frame_{i:06d}.png").write_bytes(make_image_bytes(854, 480, seed=i))
    with database.session_scope() as session:
        import_frames(session, store, [folder / "in"], CaseMeta("bench"))
        ids = list(range(1, cases + 1))
    started = time.perf_counter()
    run_predictions(database, store, backend, "phase", ids, batch_size=1)
    called = (time.perf_counter() - started) / cases
    started = time.perf_counter()
    progress = run_predictions(database, store, backend, "phase", ids, batch_size=1)
    served = (time.perf_counter() - started) / cases
    assert progress.cached == cases
    print(f"model call via runner: {called * 1000:8.2f} ms/case")
    print(f"cache hit via runner:  {served * 1000:8.2f} ms/case  = {called / served:.0f}x faster")
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = build_tiny_qwen(folder / "tiny", "qwen2.5-vl")
        backend = create_backend(ModelSpec(name="bench-tiny", backend="transformers", path=path,
                                           family="qwen2.5-vl", box_convention="qwen25_pixels",
                                           generation={"max_new_tokens": args.tokens}))
        print(f"tiny Qwen2.5-VL, {args.cases} frames of 854x480, {args.tokens} new tokens each")
        generation(backend, args.cases, args.tokens)
        cache(backend, folder, args.cases)


if __name__ == "__main__":
    main()
