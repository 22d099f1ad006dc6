"""Training-data export speed: 100,000 judgments to TRL DPO, measured in one run.

    python -m bench.export [--judgments 100000] [--frames 200] [--repeat 3] [--profile]

Bulk-inserts into a fresh SQLite database a study of 3 models over N/3 cases (3 reviewers per case, so N
current judgments with 3 rated outputs each; realistic Surg-R1 and SurGo-R1 output texts with their parsed
columns as the parser writes them; a few hundred distinct frames shared by the cases) and recounts its vote
tallies (the app keeps them as each judgment is stored; the bulk load wrote the ratings directly). Then it
times ``review.preferences.export_preferences(kind="dpo")`` end to end (database reads, votes, rows, JSON
Lines, images, manifest, fsync, rename) and, in the same run, orjson serializing the same records from
memory. The two are taken in turn ``--repeat`` times, since each one's time depends on the heap the other
leaves: the serialization makes ~80,000 fresh pages for its 58 MB, and on this machine a page fault costs
~3 us, most of its 0.23 s (0.06 s when glibc keeps freed memory). The medians give judgments/s, records/s
and the ratio export / serialize (goal >= 0.3), by the wall clock and by the process's CPU time; each turn's
times and page faults are printed too. Last, the same export once with a judgment date range, which counts
the votes from the ratings instead of the tallies."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from sqlalchemy import insert

from db.bundles import ExportFilters
from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from db.schema import (
    Case,
    Judgment,
    Model,
    OutputRating,
    Prediction,
    ReviewItem,
    Run,
    Study,
    StudyCase,
    StudyModel,
    User,
)
from models.parsing.parse import parse_output
from review.preferences import export_preferences
from review.tallies import rebuild_tallies
from tests.conftest import make_image_bytes

MODELS = ("bench-surg-r1", "bench-surgo-r1", "bench-baseline")
SURG_R1 = (
    "<think> This is a Level 3 task requiring localization of the Go Zone, which depends on the surgical "
    "phase. Level 1: Instruments: a grasper entering from the left, tip at the upper centre; a hook "
    "entering from the right, tip at the centre. Tissues: gallbladder neck, peritoneum over Calot's "
    "triangle. Level 2: Triplets: grasper, retract, gallbladder; hook, dissect, peritoneum. The hook "
    "works on the peritoneal fold while the grasper retracts the fundus. Level 3: The cystic duct is not "
    "yet exposed, so the phase is Dissection of Calot's Triangle. The Go Zone is the fibro-fatty tissue "
    'inside Calot\'s triangle only. </think> <answer> [{"bbox_2d": [%d, 212, 431, 318], "label": '
    '"go zone"}] </answer>'
)
SURGO = (
    "<think>The grasper holds the gallbladder up; the peritoneum is opened. Of options A-D this matches B, "
    "Dissection of Calot's Triangle.</think><answer>B</answer>\n<|turn|>\n<think>Phase B: the Go Zone is "
    "the fibro-fatty tissue inside the triangle.</think>\nLocation: Inside the hepatocystic triangle above "
    "the cystic duct.\nExposure: Adequate.\nNext action: Continue blunt dissection close to the "
    'gallbladder.\nCritical risk: Common bile duct injury.\n<answer>\n```json\n[{"bbox_2d": [%d, 440, '
    '505, 662], "label": "go zone"}]\n```\n</answer>'
)

TEXTS = (SURG_R1, SURGO, "(%d,212),(431,318)")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
CONVENTIONS = ("qwen25_pixels", "rel1000", "rel1000")


def populate(database: Database, store: FrameStore, judgments: int, n_frames: int) -> int:
    """Write the study world; returns the number of judgments made (a multiple of 3)."""
    cases = judgments // 3
    with database.session_scope() as session:
        frames = []
        for i in range(n_frames):
            frame, _ = store.put(session, store.validate(make_image_bytes(64, 48, seed=i)), flush=False)
            frames.append(frame)
        session.flush()
        frame_ids = [f.id for f in frames]
        rows = _rows(cases, frame_ids)
        for table, values in rows:
            for start in range(0, len(values), 20000):
                session.execute(insert(table), values[start : start + 20000])
        # The ratings went in directly, not through review.judging: count them into the vote tallies.
        rebuild_tallies(session, 1)
    return cases * 3


def _rows(cases: int, frame_ids: list[int]) -> list[tuple[type, list[dict]]]:
    reviewers = (1, 2, 3)
    # Each text variant parsed once, as an import parses it: the parsed column (levels, rationale, boxes,
    # warnings) is 0.5-2.3 KB a prediction, larger than most texts.
    texts = {(m, x): TEXTS[m] % (100 + x) for m in range(3) for x in range(200)}
    parsed = {
        key: parse_output(text, task="gozone", box_convention=CONVENTIONS[key[0]], width=64, height=48).to_json()
        for key, text in texts.items()
    }
    predictions = [
        {
            "id": c * 3 + m,
            "run_id": m + 1,
            "case_id": c + 1,
            "parsed": parsed[m, c % 200],
            "phase": parsed[m, c % 200]["phase"],
            "raw_text": texts[m, c % 200],
        }
        for c in range(cases)
        for m in range(3)
    ]
    items, judgments, ratings = [], [], []
    for c in range(cases):
        for r in reviewers:
            item = c * 3 + r
            items.append(
                {
                    "id": item,
                    "study_id": 1,
                    "case_id": c + 1,
                    "reviewer_id": r,
                    "position": c,
                    "letter_map": {"A": c * 3 + 1, "B": c * 3, "C": c * 3 + 2},
                    "token": f"t{item}",
                    "frame_token": f"f{item}",
                    "state": "judged",
                }
            )
            judgments.append(
                {
                    "id": item,
                    "item_id": item,
                    "author_id": r,
                    "revision": 1,
                    "is_current": True,
                    "best_letter": "A",
                    "none_acceptable": False,
                }
            )
            ratings += [
                {
                    "judgment_id": item,
                    "letter": "A",
                    "correct": 1,
                    "level1": "correct",
                    "level2": "correct",
                    "level3": "correct",
                    "flags": [],
                },
                {
                    "judgment_id": item,
                    "letter": "B",
                    "correct": int(r != 3),
                    "level1": "correct",
                    "level2": "wrong",
                    "level3": "na",
                    "flags": [],
                },
                {
                    "judgment_id": item,
                    "letter": "C",
                    "correct": 0,
                    "level1": "na",
                    "level2": "na",
                    "level3": "na",
                    "flags": [],
                },
            ]
    return [
        (
            User,
            [
                {"id": r, "username": f"bench-r{r}", "pseudonym": f"R{r}", "is_active": True}
                for r in reviewers
            ],
        ),
        (
            Case,
            [
                {
                    "id": c + 1,
                    "key": f"bench/v{c // 500:03d}/{c:06d}",
                    "frame_id": frame_ids[c % len(frame_ids)],
                    "dataset": "bench",
                    "procedure": "laparoscopic_cholecystectomy",
                    "video": f"v{c // 500:03d}",
                    "frame_index": c,
                    "split": "train",
                }
                for c in range(cases)
            ],
        ),
        (
            Model,
            [
                {"id": m + 1, "name": name, "backend": "replay", "settings": {}}
                for m, name in enumerate(MODELS)
            ],
        ),
        (
            Run,
            [
                {
                    "id": m + 1,
                    "model_id": m + 1,
                    "task": "gozone",
                    "prompt_version": "bench",
                    "params": {},
                    "params_sha256": "0" * 64,
                    "status": "imported",
                }
                for m in range(3)
            ],
        ),
        (Prediction, [{**p, "id": p["id"] + 1} for p in predictions]),
        (
            Study,
            [
                {
                    "id": 1,
                    "name": "bench",
                    "task": "gozone",
                    "status": "running",
                    "reviewers_per_case": 3,
                    "rubric": {},
                    "reveal_policy": "never",
                    "seed": 0,
                    "case_filter": {},
                }
            ],
        ),
        (StudyModel, [{"study_id": 1, "model_id": m + 1, "run_id": m + 1, "position": m} for m in range(3)]),
        (
            StudyCase,
            [{"study_id": 1, "case_id": c + 1, "missing": [], "identity_leaks": []} for c in range(cases)],
        ),
        (ReviewItem, [{**i, "letter_map": {k: v + 1 for k, v in i["letter_map"].items()}} for i in items]),
        (Judgment, judgments),
        (OutputRating, ratings),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judgments", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="exports and serializations, taken in turn")
    parser.add_argument("--profile", action="store_true", help="profile the first export")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="surgreview-bench-export-"))
    try:
        database = Database.from_url(f"sqlite:///{folder / 'bench.db'}")
        upgrade(database.engine)
        store = FrameStore(folder / "frames")
        start = time.perf_counter()
        judgments = populate(database, store, args.judgments, args.frames)
        print(
            f"populated {judgments:,} judgments ({judgments * 3:,} rated outputs) in "
            f"{time.perf_counter() - start:.1f} s"
        )
        exports, serializations, records, result = [], [], None, None
        for turn in range(args.repeat):
            profiler = cProfile.Profile() if args.profile and turn == 0 else None
            with database.session_scope() as session:
                start, cpu, faults = time.perf_counter(), time.process_time(), _faults()
                if profiler:
                    profiler.enable()
                result = export_preferences(session, "bench", store, "dpo", folder / f"dpo-{turn}")
                if profiler:
                    profiler.disable()
                exports.append((time.perf_counter() - start, time.process_time() - cpu, _faults() - faults))
            if profiler:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            data_file = folder / f"dpo-{turn}" / "dpo.jsonl"
            if records is None:
                records = [orjson.loads(line) for line in data_file.read_bytes().splitlines()]
            start, cpu, faults = time.perf_counter(), time.process_time(), _faults()
            data = b"\n".join(orjson.dumps(r) for r in records) + b"\n"
            serializations.append((time.perf_counter() - start, time.process_time() - cpu, _faults() - faults))
            assert data == data_file.read_bytes(), "the export differs from its records serialized"
            shutil.rmtree(folder / f"dpo-{turn}")
        rows = result.counts["rows"]
        (export_s, export_cpu), (serialize_s, serialize_cpu) = _median(exports), _median(serializations)
        print(
            f"DPO export: {rows:,} records from {judgments:,} judgments in {export_s:.2f} s (median of "
            f"{args.repeat}) = {judgments / export_s:,.0f} judgments/s, {rows / export_s:,.0f} records/s "
            f"({len(data) / 1e6:.1f} MB, {result.manifest['images']} images)"
        )
        print(f"orjson from memory: {rows / serialize_s:,.0f} records/s ({serialize_s:.3f} s, median)")
        turns = [(e[0], s[0], e[2], s[2]) for e, s in zip(exports, serializations, strict=True)]
        print(
            "each turn, export / serialize: "
            + "; ".join(f"{e:.2f} s / {s:.2f} s ({ef:,} / {sf:,} page faults)" for e, s, ef, sf in turns)
        )
        print(f"ratio export / serialize (records/s, medians): {serialize_s / export_s:.3f} (goal >= 0.3)")
        print(
            f"per turn {min(s / e for e, s, _, _ in turns):.3f}-{max(s / e for e, s, _, _ in turns):.3f}; "
            f"slowest export to fastest serialization "
            f"{min(s for _, s, _, _ in turns) / max(e for e, _, _, _ in turns):.3f}"
        )
        # On a shared machine the wall clock also counts other processes' turns: CPU time shows the work.
        print(
            f"process CPU time (medians): export {export_cpu:.2f} s, serialize {serialize_cpu:.3f} s, "
            f"ratio {serialize_cpu / export_cpu:.3f}"
        )
        # A judgment date range counts the votes from the ratings (a tally does not know when a vote was
        # cast): the same export that way, once, for scale. Every judgment is inside the range.
        with database.session_scope() as session:
            start = time.perf_counter()
            dated = export_preferences(
                session, "bench", store, "dpo", folder / "dpo-dated", filters=ExportFilters(since=EPOCH)
            )
            took = time.perf_counter() - start
        same = (folder / "dpo-dated" / "dpo.jsonl").read_bytes() == data
        print(
            f"the same export counted from the ratings (--since): {took:.2f} s, "
            f"{dated.counts['rows']:,} records, {'the same' if same else 'DIFFERENT'} bytes"
        )
        database.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _median(times: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Median wall-clock and CPU seconds."""
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def _faults() -> int:
    """Minor page faults of this process so far (a fresh page costs ~3 us on this machine)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


if __name__ == "__main__":
    main()
