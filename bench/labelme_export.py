"""LabelMe export speed: cases per second for 10,000 labelled cases, measured in one run.

    python -m bench.labelme_export [--cases 10000] [--frames 8] [--size 854x480] [--coco] [--profile]

Builds a temporary SQLite database (migrated with ``db.migrate.upgrade``) and frame store, stores a few
distinct JPEG frames (854x480, ~80 KB, by default), and bulk-inserts N cases over them (cases share frames;
every case still gets its own copy of its image in the export), each with a current Go Zone label: phase,
box, the four rationale texts; half carry LabelMe keys kept from an import (``extra``), half are approved
annotations. Then times ``export_labelme`` of all cases into a new folder inside one ``session_scope``
(export record, audit event, the final sync and commit included) and prints cases/s, the bytes written and
the time per case. With ``--coco`` it also times ``export_coco`` of the same cases. ``--size 64x48`` makes
the images tiny, which leaves the per-case cost of the exporter itself rather than the disk's write speed.

First it times a floor: a bare loop that does the file work any LabelMe export must do (copy each case's
image out of the store and write one 1.5 KB file beside it, 1,000 files per folder, one sync), and prints the
export's throughput as a ratio of that floor. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import insert, select

from annotation.exporters import export_coco, export_labelme
from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from db.schema import Case, Frame, Label

PHASES = "ABCD"
TEXTS = {"location": "Inside Calot's triangle, between the cystic duct and the cystic artery.",
         "exposure": "Adequate: the triangle is opened and the duct is seen from both sides.",
         "next_action": "Continue dissecting the fibro-fatty tissue towards the gallbladder neck.",
         "critical_risk": "The common bile duct lies medially; stay lateral to the duct."}


def frame_bytes(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A JPEG frame: a smooth random colour field with a little noise (~80 KB at 854x480)."""
    small = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    field = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    noisy = np.asarray(field, dtype=np.int16) + rng.integers(-6, 7, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def labelme_extra(n: int) -> dict:
    """What the LabelMe importer keeps of a typical file: version, flags, imagePath, the rectangle's keys."""
    return {"top": {"version": "5.4.1", "flags": {p: p == PHASES[n % 4] for p in PHASES},
                    "imagePath": f"frame_{n:06d}.jpg", "reviewer": {"name": "chief", "agreed": True}},
            "shape": {"label": "gozone", "group_id": None, "description": "", "flags": {}, "mask": None}}


def populate(database: Database, store: FrameStore, n_cases: int, n_frames: int, size: tuple[int, int],
             seed: int = 0) -> None:
    """``n_frames`` stored frames and ``n_cases`` cases over them, each with a current Go Zone label."""
    rng = np.random.default_rng(seed)
    with database.session_scope() as session:
        frames = [store.put(session, store.validate(frame_bytes(rng, *size)))[0] for _ in range(n_frames)]
        frame_ids = [frame.id for frame in frames]
    cases = [{"id": i, "key": f"bench/video{i // 1000:02d}/{i:06d}", "frame_id": frame_ids[i % n_frames],
              "dataset": "bench", "procedure": "laparoscopic_cholecystectomy",
              "video": f"video{i // 1000:02d}",
              "frame_index": i} for i in range(1, n_cases + 1)]
    labels = []
    width, height = size
    for i in range(1, n_cases + 1):
        x, y = float(rng.uniform(0, width * 0.7)), float(rng.uniform(0, height * 0.6))
        labels.append({"case_id": i, "source": "labelme:bench.json" if i % 2 else f"annotation:{i}",
                       "is_current": True, "phase": PHASES[i % 4], "phase_raw": PHASES[i % 4],
                       "box_x1": x, "box_y1": y, "box_x2": x + width * 0.2, "box_y2": y + height * 0.25,
                       "extra": labelme_extra(i) if i % 2 else None, "content_sha256": "0" * 64, **TEXTS})
    with database.session_scope() as session:
        for table, rows in ((Case, cases), (Label, labels)):
            for start in range(0, len(rows), 5000):
                session.execute(insert(table), rows[start:start + 5000])


def timed_export(database: Database, store: FrameStore, target: Path, exporter, profile: bool) -> tuple:
    """(seconds, summary) of one export of every case, commit included."""
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    with database.session_scope() as session:
        summary = exporter(session, store, target, actor="bench")
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(20)
    return seconds, summary


def file_floor(store: FrameStore, frame_paths: list[str], target: Path, n_cases: int) -> float:
    """Seconds for the bare file work of exporting ``n_cases``: copy an image and write a small file each."""
    payload = b"x" * 1500
    started = time.perf_counter()
    for i in range(n_cases):
        folder = target / f"video{i // 1000:02d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        source = store.root / frame_paths[i % len(frame_paths)]
        shutil.copyfile(source, folder / f"{i:06d}{source.suffix}")
        (folder / f"{i:06d}.json").write_bytes(payload)
    os.sync()
    return time.perf_counter() - started


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=8, help="distinct frames shared by the cases")
    parser.add_argument("--size", default="854x480", help="frame size WxH (64x48: exporter cost only)")
    parser.add_argument("--coco", action="store_true", help="also time the COCO export")
    parser.add_argument("--profile", action="store_true", help="cProfile the LabelMe export")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-labelme-") as tmp:
        root = Path(tmp)
        database = Database.from_url(f"sqlite:///{root / 'bench.db'}")
        upgrade(database.engine)
        store = FrameStore(root / "frames")
        started = time.perf_counter()
        populate(database, store, args.cases, args.frames, size)
        print(f"{args.cases} cases over {args.frames} {args.size} frames inserted in "
              f"{time.perf_counter() - started:.1f} s")
        with database.session_scope() as session:
            frame_paths = list(session.scalars(select(Frame.path)))
        floor = file_floor(store, frame_paths, root / "floor", args.cases)
        print(f"floor (copy image + write 1.5 KB file per case): {args.cases / floor:,.0f} cases/s "
              f"({floor / args.cases * 1000:.2f} ms/case)")
        runs = [("labelme", export_labelme)] + ([("coco", export_coco)] if args.coco else [])
        for name, exporter in runs:
            seconds, summary = timed_export(database, store, root / name, exporter, args.profile)
            assert len(summary.exported) == args.cases, summary.render()[:2000]
            size = folder_bytes(root / name)
            print(f"{name} export: {args.cases} cases in {seconds:.2f} s = {args.cases / seconds:,.0f} "
                  f"cases/s ({seconds / args.cases * 1000:.2f} ms/case; {size / 1e6:,.0f} MB written; "
                  f"{floor / seconds:.2f} of the floor's throughput)")
        database.dispose()


if __name__ == "__main__":
    main()
