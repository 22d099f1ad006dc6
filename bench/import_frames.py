"""How fast import_frames runs compared with the least any importer must do to the same files.

    python -m bench.import_frames [--n 1000] [--profile] [--no-postgres]

Generates N distinct 854x480 JPEG frames, then times (a) a bare loop that reads, sha256-hashes and fully
decodes each file, and (b) import_frames into a fresh migrated SQLite database and frame store, one
session committed at the end; the same against PostgreSQL when a server is reachable. The goal is that
(b) runs at least half as fast as (a).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from annotation.importers import CaseMeta, ImportSummary, import_frames
from db.engine import Database, make_engine
from db.frames import FrameStore
from db.migrate import upgrade

WIDTH, HEIGHT = 854, 480
FRAMES_PER_VIDEO = 250
GOAL = 0.5
POSTGRES_URL = os.environ.get("SURGREVIEW_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def synthetic_frame(rng: np.random.Generator) -> bytes:
    """A quality-90 JPEG of smooth random colour fields plus sensor-like noise: ~83 KB, like a real frame."""
    coarse = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8))
    base = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.float32)
    noisy = base + rng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32) * 4.5
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_frames(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``folder/videoNN/frame_NNNNNN.jpg`` for ``n`` distinct frames, 250 per video folder."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(n):
        path = folder / f"video{index // FRAMES_PER_VIDEO + 1:02d}" / f"frame_{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(synthetic_frame(rng))
        paths.append(path)
    return paths


def bare_loop(paths: list[Path]) -> None:
    """The floor: read, hash and fully decode every file, nothing else."""
    for path in paths:
        data = path.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as image:
            image.load()


def import_into(url: str, folder: Path, store_root: Path,
                profile: cProfile.Profile | None = None) -> tuple[float, ImportSummary]:
    """Seconds for import_frames of ``folder`` into the migrated database at ``url``, committed once."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        database = Database(engine, sessionmaker(engine, expire_on_commit=False))
        store = FrameStore(store_root)
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        with database.session_scope() as session:
            summary = import_frames(session, store, [folder], CaseMeta("bench"))
        if profile is not None:
            profile.disable()
        return time.perf_counter() - started, summary
    finally:
        engine.dispose()


@contextmanager
def throwaway_postgres(admin_url: str) -> Iterator[str | None]:
    """A new empty database on the server of ``admin_url``, dropped afterwards; None when unreachable."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"surgreview_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        print(f"PostgreSQL: skipped, not reachable at {admin_url} ({exc.__class__.__name__})")
        admin.dispose()
        yield None
        return
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report(label: str, n: int, seconds: float, floor_seconds: float, summary: ImportSummary) -> float:
    ratio = floor_seconds / seconds
    verdict = "ok" if ratio >= GOAL else f"below the goal of {GOAL}"
    print(f"(b) import_frames, {label}: {seconds:7.2f} s  {n / seconds:7.1f} frames/s  "
          f"ratio (b)/(a) = {ratio:.2f} ({verdict})  [{summary.counts}]")
    if len(summary.imported) != n:
        print(f"    warning: expected {n} imported frames", file=sys.stderr)
    return ratio


def print_profile(profile: cProfile.Profile, limit: int = 25) -> None:
    stats = pstats.Stats(profile).strip_dirs()
    for key in ("tottime", "cumulative"):
        print(f"\n--- cProfile of the SQLite import, top {limit} by {key} ---")
        stats.sort_stats(key).print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="how many frames to generate (default 1000)")
    parser.add_argument("--profile", action="store_true", help="cProfile the SQLite import and print the top")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL run")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="admin URL of a PostgreSQL server")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="surgreview-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        paths = write_frames(work / "frames", args.n)
        sizes = [p.stat().st_size for p in paths]
        elapsed = time.perf_counter() - started
        print(f"generated {args.n} frames {WIDTH}x{HEIGHT} JPEG q90 in {elapsed:.1f} s; "
              f"mean {sum(sizes) / len(sizes) / 1024:.0f} KB, min {min(sizes) / 1024:.0f} KB, "
              f"max {max(sizes) / 1024:.0f} KB")

        floor = timed(lambda: bare_loop(paths))
        print(f"(a) read + sha256 + decode: {floor:7.2f} s  {args.n / floor:7.1f} frames/s")

        profile = cProfile.Profile() if args.profile else None
        sqlite_url = f"sqlite:///{work / 'bench.db'}"
        seconds, summary = import_into(sqlite_url, work / "frames", work / "store_sqlite", profile)
        ratios = [report("SQLite", args.n, seconds, floor, summary)]

        if not args.no_postgres:
            with throwaway_postgres(args.postgres_url) as url:
                if url is not None:
                    seconds, summary = import_into(url, work / "frames", work / "store_postgres")
                    ratios.append(report("PostgreSQL", args.n, seconds, floor, summary))
        if profile is not None:
            print_profile(profile)
    return 0 if min(ratios) >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
