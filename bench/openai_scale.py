"""Throughput of `surgreview predict` against an OpenAI-compatible server (vLLM's stand-in) by concurrency.

    python -m bench.openai_scale [--latency 0.25] [--rounds 20] [--concurrency 1 4 16 64]

A fake server on 127.0.0.1 (tests/fake_openai_server.py, in its own process as a real server would be)
answers every completion after a fixed latency, as a GPU server would after its decode time. For each concurrency c the real runner (models.runner.
run_predictions: prompt building, frame encoding, HTTP, parsing, storing, a commit per batch) predicts
``rounds * c`` distinct 854x480 JPEG frames on a fresh SQLite database with a new model (no cache hits).
Ideal throughput is c / latency requests per second; the ratio measured / ideal says how much of the
server's capacity the client side leaves unused.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image


def _frames(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    base = Image.fromarray(rng.integers(0, 255, (60, 107, 3), dtype=np.uint8)).resize(
        (854, 480), Image.Resampling.BICUBIC)
    for n in range(count):
        frame = base.copy()
        frame.putpixel((n % 854, (n // 854) % 480), (n % 256, 0, 0))  # distinct bytes, distinct frames
        out = io.BytesIO()
        frame.save(out, "JPEG", quality=90)
        (folder / f"frame_{n:06d}.jpg").write_bytes(out.getvalue())


@contextmanager
def _server_process(latency: float, reply: str) -> Iterator[str]:
    """tests/fake_openai_server.py in a subprocess with ``latency`` and ``reply``; yields its base URL."""
    from tests.browser import free_port

    port = free_port()
    code = ("import sys; from tests import fake_openai_server as f; "
            f"b = f.Behaviour(reply={reply!r}, latency_s={latency!r}); "
            f"s = f.FakeOpenAIServer(b, port={port}).start(); print('ready', flush=True); s.stopping.wait()")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the fake server did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per completion at the server")
    parser.add_argument("--rounds", type=int, default=20, help="requests per connection")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    args = parser.parse_args()

    from sqlalchemy import select

    from annotation.importers import CaseMeta
    from annotation.importers.frames import import_frames
    from db.engine import Database
    from db.frames import FrameStore
    from db.migrate import upgrade
    from db.schema import Case
    from models.backends import ModelSpec
    from models.backends.openai_backend import OpenAIBackend
    from models.runner import run_predictions

    total = max(args.concurrency) * args.rounds
    reply = "<think>Level 1: a grasper.</think><answer>(120,80),(400,300)</answer>"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _frames(folder / "in", total)
        database = Database.from_url(f"sqlite:///{folder / 'bench.db'}")
        upgrade(database.engine)
        store = FrameStore(folder / "store")
        with database.session_scope() as session:
            import_frames(session, store, [folder / "in"], CaseMeta("bench", video="v1"))
            ids = session.scalars(select(Case.id).order_by(Case.id)).all()
        print(f"{total} distinct 854x480 JPEG frames; server latency {args.latency * 1000:.0f} ms per request; "
              "task: phase (one request per case)")
        print(f"{'concurrency':>11} {'requests':>9} {'seconds':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6}")
        with _server_process(args.latency, reply) as url:
            for concurrency in args.concurrency:
                count = concurrency * args.rounds
                spec = ModelSpec(name=f"bench-c{concurrency}", backend="openai", url=url,
                                 remote_model="fake-model", concurrency=concurrency, timeout_s=60)
                backend = OpenAIBackend(spec)
                started = time.perf_counter()
                done = run_predictions(database, store, backend, "phase", ids[:count])
                seconds = time.perf_counter() - started
                backend.close()
                assert done.predicted == count and done.failed == 0, done
                rate, ideal = count / seconds, concurrency / args.latency
                print(f"{concurrency:>11} {count:>9} {seconds:>8.2f} {rate:>8.1f} {ideal:>8.1f} "
                      f"{rate / ideal:>6.2f}")
        database.dispose()


if __name__ == "__main__":
    main()
